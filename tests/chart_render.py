"""Rendering the Helm chart with Helm's own engine (helm-python-sdk: Helm v4's Go code, offline) for the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "argomlops"
ARGO_SCHEMA = ROOT.parent / "shared" / "schemas" / "argo-workflows-v4.1.2" / "schema.json"
KUBE_VERSION = "1.33"  # GKE's regular channel at the time of writing
RELEASE = "argomlops"
NAMESPACE = "argomlops"
# The chart ships copies of these generated files (Helm reads nothing outside the chart).
GENERATED = {
    ROOT / "crds" / "mlops.yaml": CHART / "files" / "mlops-crd.yaml",
    ROOT / "crds" / "mlopssweep.yaml": CHART / "files" / "mlopssweep-crd.yaml",
    ROOT / "workflows" / "argomlops-train.yaml": CHART / "files" / "argomlops-train.yaml",
}
CHART_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
}


def render(chart: helm.Chart, values: dict[str, Any] | None = None, release: str = RELEASE) -> list[dict[str, Any]]:
    """Every object the chart renders with these values, NOTES.txt left out."""
    manifests = chart.render(values or {}, name=release, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def deployment_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def argo_validator_or_none() -> jsonschema.Draft202012Validator | None:
    """A validator of WorkflowTemplates with Argo's published JSON schema; None where the schema is not here."""
    if not ARGO_SCHEMA.exists():
        return None
    schema = json.loads(ARGO_SCHEMA.read_text())
    # The published schema types IntOrString as string only, while Argo itself (and its examples)
    # accept integers there too.
    schema["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["string", "integer"]}
    root = {
        "$ref": "#/definitions/io.argoproj.workflow.v1alpha1.WorkflowTemplate",
        "definitions": schema["definitions"],
    }
    return jsonschema.Draft202012Validator(root)
