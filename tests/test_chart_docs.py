"""docs/gke.md's commands and manifests against the chart, and no value of the chart that nothing reads."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import yaml
from chart_render import (
    CHART,
    NAMESPACE,
    ROOT,
    only,
    render,
)

from argomlops.workflows import names

# 4. docs/gke.md: the commands a person types must keep working with this chart and these manifests.

GKE_DOC = ROOT / "docs" / "gke.md"
DOC_VARIABLES = {
    "REGISTRY": "us-central1-docker.pkg.dev/my-project/argomlops",
    "VERSION": "0.1.0",
    "BUCKET": "my-project-argomlops",
    "GSA": "argomlops-trainer@my-project.iam.gserviceaccount.com",
    "NAMESPACE": NAMESPACE,
}


def doc_text() -> str:
    text = GKE_DOC.read_text()
    for key, value in DOC_VARIABLES.items():
        text = text.replace(f'"${key}"', value).replace(f"${{{key}}}", value).replace(f"${key}", value)
    return text


def test_gke_doc_helm_install_values_render(chart: helm.Chart) -> None:
    text = doc_text()
    install = text[text.index("helm install argomlops ./charts/argomlops") :].split("```", 1)[0]
    words = shlex.split(install.replace("\\\n", " "))  # as the shell reads it: continuations, quotes
    sets = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    assert len(sets) >= 4, install
    values: dict[str, Any] = {}
    for expression in sets:
        values = helm_merge(values, helm.parse_set_string(expression))
    objects = render(chart, values)
    trainer = only(objects, "ServiceAccount", names.SERVICE_ACCOUNT)
    assert trainer["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == DOC_VARIABLES["GSA"]
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{DOC_VARIABLES['REGISTRY']}/argomlops-operator:{DOC_VARIABLES['VERSION']}"
    # The image of every MLOps object the doc applies (none names one): the trainer the doc pushed.
    trainer_image = {e["name"]: e["value"] for e in container["env"]}["ARGOMLOPS_TRAINER_IMAGE"]
    assert trainer_image == f"{DOC_VARIABLES['REGISTRY']}/argomlops-trainer:{DOC_VARIABLES['VERSION']}"
    assert f"-t {trainer_image} ." in text.replace('"', "").replace("\\\n  ", "")


def helm_merge(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    merged = dict(into)
    for key, value in more.items():
        merged[key] = helm_merge(merged[key], value) if isinstance(value, dict) and key in merged else value
    return merged


def test_gke_doc_manifests_are_valid_mlops_specs() -> None:
    """The smoke manifest written in the doc, and examples/fafa.yaml after the doc's sed, pass the spec model."""
    from argomlops.config import MLOpsSpec

    text = doc_text()
    smoke = yaml.safe_load(text.split("cat > smoke.yaml <<EOF\n", 1)[1].split("\nEOF\n", 1)[0])
    spec = MLOpsSpec.model_validate(smoke["spec"])
    assert spec.image is None  # the chart's trainer.image, which the doc's helm install sets
    assert spec.placement.gpus == 0

    fafa = (ROOT / "examples" / "fafa.yaml").read_text()
    edits = re.findall(r'-e "s\|([^|]+)\|([^|]+)\|(g?)"', text.split("examples/fafa.yaml > fafa.yaml")[0][-400:])
    assert len(edits) == 1, edits
    for pattern, replacement, flags in edits:
        fafa = re.sub(pattern, replacement, fafa, count=0 if flags else 1)
    spec = MLOpsSpec.model_validate(yaml.safe_load(fafa)["spec"])
    assert spec.image is None
    assert spec.artifacts.startswith(f"gs://{DOC_VARIABLES['BUCKET']}/") and spec.data.source.startswith(
        f"gs://{DOC_VARIABLES['BUCKET']}/"
    )
    # Everything the doc reads or installs exists in the repository.
    for path in ("charts/argomlops", "examples/fafa.yaml", "Dockerfile"):
        assert path in GKE_DOC.read_text() and (ROOT / path).exists()


def test_every_value_is_used_by_a_template() -> None:
    """No dead keys: each leaf of values.schema.json is read by some template as .Values.<path>."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    templates = "\n".join(p.read_text() for p in (CHART / "templates").iterdir())

    def leaves(node: dict[str, Any], path: str) -> Iterator[str]:
        children = node.get("properties")
        if not children:
            yield path
            return
        for key, child in children.items():
            yield from leaves(child, f"{path}.{key}" if path else key)

    def read(path: str) -> bool:
        # The key itself, or a whole section holding it (e.g. `toYaml .Values.operator.resources`).
        parts = path.split(".")
        ancestors = [".".join(parts[:n]) for n in range(1, len(parts) + 1)]
        return any(re.search(rf"\.Values\.{re.escape(a)}(?![\w.-])", templates) for a in ancestors)

    unused = [path for path in leaves(schema, "") if not read(path)]
    assert not unused, f"values nobody reads: {unused}"
