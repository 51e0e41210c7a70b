"""The Helm chart, rendered by Helm's own engine (helm-python-sdk: Helm v4's Go code, offline).

Every rendered object is validated with kubernetes-validate in strict mode (unknown fields fail) and the
WorkflowTemplate with Argo's published JSON schema. No cluster is involved: what the API server would
do at admission is what these schemas describe.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from argomlops.workflows import names

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


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


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


@pytest.fixture(scope="module")
def defaults(chart: helm.Chart) -> list[dict[str, Any]]:
    return render(chart)


@pytest.fixture(scope="module")
def argo_validator() -> jsonschema.Draft202012Validator:
    if not ARGO_SCHEMA.exists():
        pytest.skip(f"Argo's JSON schema is not at {ARGO_SCHEMA}")
    schema = json.loads(ARGO_SCHEMA.read_text())
    # The published schema types IntOrString as string only, while Argo itself (and its examples)
    # accept integers there too.
    schema["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["string", "integer"]}
    root = {
        "$ref": "#/definitions/io.argoproj.workflow.v1alpha1.WorkflowTemplate",
        "definitions": schema["definitions"],
    }
    return jsonschema.Draft202012Validator(root)


# 1. The generated files and their copies in the chart.


@pytest.mark.parametrize("source", list(GENERATED), ids=lambda p: p.name)
def test_chart_copies_equal_generated_files(source: Path) -> None:
    copy_path = GENERATED[source]
    assert source.exists(), f"{source.relative_to(ROOT)} is missing"
    assert copy_path.exists(), f"{copy_path.relative_to(ROOT)} is missing: run bash scripts/sync-chart"
    assert copy_path.read_bytes() == source.read_bytes(), (
        f"{copy_path.relative_to(ROOT)} differs from {source.relative_to(ROOT)}: run bash scripts/sync-chart"
    )


def strip_chart_additions(rendered: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """The rendered object without what the chart adds (namespace, its labels, resource-policy).

    The source's own labels and annotations must come through unchanged; the chart may only add to them.
    """
    bare = copy.deepcopy(rendered)
    metadata = bare["metadata"]
    metadata.pop("namespace", None)
    for key, added in (("labels", CHART_LABELS), ("annotations", {"helm.sh/resource-policy"})):
        own = source["metadata"].get(key, {})
        kept = {k: v for k, v in metadata.pop(key, {}).items() if k in own or k not in added}
        assert {k: kept.get(k) for k in own} == own, f"the chart changed the generated {key}"
        if kept:
            metadata[key] = kept
    return bare


def test_rendered_workflow_template_is_the_generated_one(defaults: list[dict[str, Any]]) -> None:
    rendered = copy.deepcopy(only(defaults, "WorkflowTemplate"))
    source = yaml.safe_load((ROOT / "workflows" / "argomlops-train.yaml").read_text())
    # The one value the chart adds: the image parameter's default is trainer.image (tests/test_chart_images.py).
    (image,) = [p for p in rendered["spec"]["arguments"]["parameters"] if p["name"] == names.P_IMAGE]
    assert image.pop("value") == "ghcr.io/argomlops/argomlops-trainer:0.1.0"
    assert strip_chart_additions(rendered, source) == source
    assert rendered["metadata"]["namespace"] == NAMESPACE
    assert rendered["metadata"]["name"] == names.TEMPLATE_NAME


@pytest.mark.parametrize(
    ("file", "name"), [("mlops.yaml", "mlops.argomlops.dev"), ("mlopssweep.yaml", "mlopssweeps.argomlops.dev")]
)
def test_rendered_crd_is_the_generated_one(defaults: list[dict[str, Any]], file: str, name: str) -> None:
    rendered = only(defaults, "CustomResourceDefinition", name)
    source = yaml.safe_load((ROOT / "crds" / file).read_text())
    assert strip_chart_additions(rendered, source) == source
    assert rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "namespace" not in rendered["metadata"]


# 2. Validity of everything rendered, for several value sets.

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {
        "namespaces": ["team-a", "team-b"],
        "operator": {"historyLimit": 3, "verbose": True, "chargeInterval": 10},
        "prices": {"gpuHour": 0.35, "node": {"vcpus": 8, "memoryGiBHour": "0.0011"}},
        "budget": {"namespaceMonthlyCap": 250, "namespaceMonthlyCaps": {"team-b": 40.5}},
        "gpuQueue": {"nvidia-tesla-t4": 2, "nvidia-l4": 1},
        "cpuQueue": 3,
        "trainer": {
            "serviceAccount": {"gcpServiceAccount": "trainer@my-project.iam.gserviceaccount.com"},
            "image": {"repository": "europe-docker.pkg.dev/p/r/argomlops-trainer", "tag": "0.2.0"},
        },
    },
    "cluster-wide": {
        "rbac": {"clusterWide": True},
        "crds": {"install": False},
        "operator": {
            "image": {"repository": "europe-docker.pkg.dev/p/r/argomlops-operator", "tag": "0.2.0"},
            "imagePullSecrets": [{"name": "regcred"}],
            "nodeSelector": {"cloud.google.com/gke-nodepool": "default-pool"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
            "podAnnotations": {"example.com/scrape": "true"},
            "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["172.16.0.2/32"]}, "dns": {"cidrs": []}},
        },
    },
}


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_every_object_validates_strictly(
    chart: helm.Chart, values: dict[str, Any], argo_validator: jsonschema.Draft202012Validator
) -> None:
    objects = render(chart, values)
    assert objects
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("argoproj.io/"):
            errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in argo_validator.iter_errors(obj)]
            assert not errors, f"{where}: {errors[:3]}"
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_lint_is_clean() -> None:
    report = helm.lint(CHART, strict=True, namespace=NAMESPACE)
    errors = [m for m in report["messages"] if m["severity"] >= 2]
    assert not errors and not report["errors"], report


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"operator": {"pricePerGPUHour": 1}}, "pricePerGPUHour"),
        ({"opertor": {}}, "opertor"),
        ({"prices": {"gpuHour": "cheap"}}, "gpuHour"),
        ({"operator": {"pricePerGpuHour": 0.14}}, "pricePerGpuHour"),  # moved to prices.gpuHour
        ({"budget": {"namespaceMonthlyCap": 0}}, "namespaceMonthlyCap"),
        ({"budget": {"namespaceMonthlyCaps": {"team-a": -5}}}, "team-a"),
        ({"gpuQueue": {"cpu": 2}}, "cpu"),  # the CPU runs' own key
        ({"rbac": {"clusterwide": True}}, "clusterwide"),
        ({"gpuQueue": {"nvidia-tesla-t4": "two"}}, "nvidia-tesla-t4"),
        ({"trainer": {"serviceAccount": {"gcpServiceAccount": "not-an-email"}}}, "gcpServiceAccount"),
    ],
)
def test_schema_rejects_bad_values(chart: helm.Chart, values: dict[str, Any], key: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=key):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_schema_closes_every_object() -> None:
    """Every object level of values.schema.json is closed; open maps may only hold typed scalars."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object":
            extra = node.get("additionalProperties")
            assert extra is not None, f"{path}: additionalProperties missing"
            if isinstance(extra, dict):
                assert extra.get("type") in ("string", "integer", "number"), f"{path}: open map of {extra}"
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}")
        for key, child in node.get("definitions", {}).items():
            walk(child, f"#{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "values")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    helm.Chart.load(CHART).validate_schema(values)


def test_every_value_has_a_comment() -> None:
    """Each value has a comment right above it, or sits inside a block whose key has one (resources)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    sections: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    previous = ""
    checked = 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            previous = stripped or previous if stripped.startswith("#") else stripped
            continue
        indent = len(line) - len(line.lstrip())
        while sections and sections[-1][0] >= indent:
            sections.pop()
        documented = previous.startswith("#") or any(doc for _, doc in sections)
        if stripped.endswith(":"):
            sections.append((indent, previous.startswith("#")))
        else:
            assert documented, f"values.yaml line {number} ({stripped}) has no comment"
            checked += 1
        previous = stripped
    assert checked >= 15


# 3. What the objects say.


def test_operator_deployment(defaults: list[dict[str, Any]]) -> None:
    deployment = only(defaults, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["image"] == "ghcr.io/argomlops/argomlops-operator:0.1.0"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    port = container["ports"][0]["containerPort"]
    assert f"--liveness=http://0.0.0.0:{port}/healthz" in container["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ARGOMLOPS_NAMESPACES"] == NAMESPACE
    assert float(env["ARGOMLOPS_PRICE_PER_GPU_HOUR"]) == 0.14
    assert env["ARGOMLOPS_HISTORY_LIMIT"] == "10"
    assert container["resources"]["limits"]["memory"] == "256Mi"
    assert pod["serviceAccountName"] == only(defaults, "ServiceAccount", "argomlops-operator")["metadata"]["name"]


def test_non_default_values_reach_the_objects(chart: helm.Chart) -> None:
    objects = render(chart, VALUE_SETS["namespaced"])
    env = deployment_env(objects)
    assert env["ARGOMLOPS_NAMESPACES"] == "team-a,team-b"
    assert env["ARGOMLOPS_PRICE_PER_GPU_HOUR"] == "0.35"
    assert env["ARGOMLOPS_NODE_VCPUS"] == "8" and env["ARGOMLOPS_PRICE_PER_GIB_HOUR"] == "0.0011"
    assert env["ARGOMLOPS_MONTHLY_CAP"] == "250" and env["ARGOMLOPS_MONTHLY_CAPS"] == "team-b=40.5"
    assert env["ARGOMLOPS_HISTORY_LIMIT"] == "3"
    for kind, name in [
        ("WorkflowTemplate", names.TEMPLATE_NAME),
        ("ServiceAccount", names.SERVICE_ACCOUNT),
        ("ConfigMap", names.GPU_QUEUE_CONFIG_MAP),
        ("Role", "argomlops-operator"),
        ("RoleBinding", "argomlops-operator"),
        ("Role", names.SERVICE_ACCOUNT),
    ]:
        found = find(objects, kind, name)
        assert sorted(o["metadata"]["namespace"] for o in found) == ["team-a", "team-b"], (kind, name)
    queue = find(objects, "ConfigMap", names.GPU_QUEUE_CONFIG_MAP)[0]
    # One key per accelerator, and one of their own for CPU-only runs.
    assert queue["data"] == {"nvidia-tesla-t4": "2", "nvidia-l4": "1", names.CPU_QUEUE_KEY: "3"}
    trainer = find(objects, "ServiceAccount", names.SERVICE_ACCOUNT)[0]
    assert trainer["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "trainer@my-project.iam.gserviceaccount.com"
    }
    # The operator's bindings point at its ServiceAccount in the release namespace.
    for binding in find(objects, "RoleBinding", "argomlops-operator"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "argomlops-operator", "namespace": NAMESPACE}]


def rules_of(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }


def test_namespaced_rbac_is_least_privilege(defaults: list[dict[str, Any]]) -> None:
    framework = rules_of(only(defaults, "ClusterRole"))
    assert framework == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
    }
    # Exactly the calls of argomlops.operator.handlers and what kopf does for them.
    operator = rules_of(only(defaults, "Role", "argomlops-operator"))
    assert operator == {
        ("", "events", "create"),
        *(("argomlops.dev", "mlops", verb) for verb in ("get", "list", "watch", "patch")),
        ("argomlops.dev", "mlops/status", "patch"),
        ("argomlops.dev", "mlops/finalizers", "update"),
        ("", "configmaps", "create"),
        ("", "configmaps", "get"),
        ("", "configmaps", "patch"),
        *(("argoproj.io", "workflows", verb) for verb in ("create", "get", "list", "watch", "patch")),
        # MLOpsSweep: its objects and status, and its trials, which are MLOps objects it creates.
        *(("argomlops.dev", "mlopssweeps", verb) for verb in ("get", "list", "watch", "patch")),
        ("argomlops.dev", "mlopssweeps/status", "patch"),
        ("argomlops.dev", "mlopssweeps/finalizers", "update"),
        ("argomlops.dev", "mlops", "create"),
    }
    # Reading and patching ConfigMaps only by name: the namespace's spend, never the run ConfigMaps.
    (by_name,) = [r for r in only(defaults, "Role", "argomlops-operator")["rules"] if "resourceNames" in r]
    assert by_name["resources"] == ["configmaps"] and by_name["resourceNames"] == ["argomlops-spend"]
    trainer = rules_of(only(defaults, "Role", names.SERVICE_ACCOUNT))
    assert trainer == {
        ("argoproj.io", "workflowtaskresults", "create"),
        ("argoproj.io", "workflowtaskresults", "patch"),
    }


def test_cluster_wide_rbac_replaces_roles(chart: helm.Chart, defaults: list[dict[str, Any]]) -> None:
    objects = render(chart, {"rbac": {"clusterWide": True}})
    assert not find(objects, "Role", "argomlops-operator")
    assert not find(objects, "RoleBinding", "argomlops-operator")
    cluster_role = only(objects, "ClusterRole", "argomlops-operator")
    assert rules_of(cluster_role) == rules_of(only(defaults, "Role", "argomlops-operator"))
    binding = only(objects, "ClusterRoleBinding", "argomlops-operator")
    assert binding["roleRef"]["name"] == "argomlops-operator"
    env = deployment_env(objects)
    assert env["ARGOMLOPS_NAMESPACES"] == "*"
    # The trainer still needs its own Role: Argo's executor runs in the run's namespace.
    assert find(objects, "Role", names.SERVICE_ACCOUNT)


def test_gates_and_names(chart: helm.Chart) -> None:
    objects = render(chart, {"crds": {"install": False, "keep": False}, "workflowTemplate": {"install": False}})
    assert not find(objects, "CustomResourceDefinition") and not find(objects, "WorkflowTemplate")
    for unkept in find(render(chart, {"crds": {"keep": False}}), "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in unkept["metadata"].get("annotations", {})
    long_release = "a-very-long-release-name-that-fills-the-fifty-three-c"
    for obj in render(chart, {}, release=long_release):
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
    assert only(render(chart, {}, release="ml"), "Deployment")["metadata"]["name"] == "ml-argomlops-operator"


def test_notes_tell_the_next_commands(chart: helm.Chart) -> None:
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)[f"{RELEASE}/templates/NOTES.txt"]
    assert "kubectl -n argomlops apply -f examples/fafa.yaml" in notes
    assert "kubectl -n argomlops get mlops -w" in notes
    assert "kubectl -n argomlops apply -f examples/sweep.yaml" in notes and "get mlsw -w" in notes
    assert "kubectl -n argo port-forward svc/argo-server 2746:2746" in notes
    assert "rollout status deployment/argomlops-operator" in notes


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_operator_reads_the_settings_the_chart_sets(
    chart: helm.Chart, values: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Deployment's environment, parsed by the operator's own settings loader."""
    from argomlops.operator import settings

    objects = render(chart, values)
    env = deployment_env(objects)
    assert set(env) == {settings.env_name(field) for field in settings.OperatorSettings.model_fields}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    loaded = settings.load_settings()
    merged = chart.merge_values(values)
    prices = merged["prices"]
    assert loaded.prices() == settings.Prices(
        gpu_hour=float(prices["gpuHour"]),
        vcpu_hour=float(prices["node"]["vcpuHour"]),
        gib_hour=float(prices["node"]["memoryGiBHour"]),
        node_vcpus=float(prices["node"]["vcpus"]),
        node_memory_gib=float(prices["node"]["memoryGiB"]),
        gib_month=float(prices["storage"]["gibMonth"]),
        class_a_per_1000=float(prices["storage"]["classAPer1000"]),
        class_b_per_1000=float(prices["storage"]["classBPer1000"]),
    )
    # Helm drops keys whose value is null from the merged values: no key, no cap.
    assert loaded.monthly_cap == merged["budget"].get("namespaceMonthlyCap")
    assert loaded.monthly_caps == merged["budget"]["namespaceMonthlyCaps"]
    assert loaded.charge_interval == merged["operator"]["chargeInterval"]
    assert loaded.history_limit == merged["operator"]["historyLimit"]
    assert loaded.watch_timeout == merged["operator"]["watchTimeout"]
    trainer_image = merged["trainer"]["image"]
    assert loaded.trainer_image == f"{trainer_image['repository']}:{trainer_image['tag'] or '0.1.0'}"
    if merged["rbac"]["clusterWide"]:
        assert loaded.clusterwide
    else:
        run_namespaces = {o["metadata"]["namespace"] for o in find(objects, "Role", "argomlops-operator")}
        assert set(loaded.namespaces) == run_namespaces == set(merged["namespaces"] or [NAMESPACE])


@pytest.mark.parametrize("verbose", [False, True])
def test_operator_accepts_the_deployment_args(chart: helm.Chart, verbose: bool) -> None:
    """The image's entry point is `argomlops operator`; the chart's args must be options it knows."""
    from argomlops.operator.main import build_parser

    objects = render(chart, {"operator": {"verbose": verbose, "healthPort": 9090}})
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert args.standalone is True and args.verbose is verbose
    assert args.liveness == "http://0.0.0.0:9090/healthz"
    assert container["ports"] == [{"name": "health", "containerPort": 9090, "protocol": "TCP"}]


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


# 5. The optional TensorBoard.

TENSORBOARD = {
    "tensorboard": {"enabled": True, "logdir": "gs://my-project-argomlops/artifacts"},
    "trainer": {"serviceAccount": {"gcpServiceAccount": "trainer@my-project.iam.gserviceaccount.com"}},
}


def test_tensorboard_is_off_by_default(defaults: list[dict[str, Any]], chart: helm.Chart) -> None:
    assert not [o for o in defaults if "tensorboard" in o["metadata"]["name"]]
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)
    assert "port-forward svc/argomlops-tensorboard" not in next(v for k, v in notes.items() if k.endswith("NOTES.txt"))


def test_tensorboard_reads_the_bucket_as_the_trainer_non_root_and_bounded(
    chart: helm.Chart, argo_validator: jsonschema.Draft202012Validator
) -> None:
    values = {**TENSORBOARD, "namespaces": ["team-a", "team-b"]}
    objects = render(chart, values)
    for obj in objects:  # strictly valid, like every other object of the chart
        if obj["apiVersion"].startswith("argoproj.io/"):
            assert not list(argo_validator.iter_errors(obj))
        else:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    deployment = only(objects, "Deployment", "argomlops-tensorboard")
    service = only(objects, "Service", "argomlops-tensorboard")
    # In the first namespace of runs, as the trainer's ServiceAccount (its Workload Identity reads gs://).
    assert deployment["metadata"]["namespace"] == service["metadata"]["namespace"] == "team-a"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == names.SERVICE_ACCOUNT
    trainer = [
        o for o in find(objects, "ServiceAccount", names.SERVICE_ACCOUNT) if o["metadata"]["namespace"] == "team-a"
    ]
    assert trainer[0]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith("trainer@")
    (container,) = pod["containers"]
    assert container["command"] == ["tensorboard"] and container["image"] == "ghcr.io/argomlops/argomlops-trainer:0.1.0"
    assert "--logdir=gs://my-project-argomlops/artifacts" in container["args"]
    assert "--load_fast=false" in container["args"] and "--bind_all" in container["args"]
    # Non-root, read-only, bounded.
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"] == "2Gi" and container["resources"]["requests"]["cpu"]
    # The Service reaches exactly these pods, on the port TensorBoard listens on.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["targetPort"] == "http"
    assert container["ports"][0] == {"name": "http", "containerPort": 6006, "protocol": "TCP"}
    # The operator's Service selector must not catch TensorBoard's pods (and the other way round).
    operator_labels = only(objects, "Deployment", "argomlops-operator")["spec"]["selector"]["matchLabels"]
    assert not operator_labels.items() <= labels.items()
    notes = next(
        v for k, v in chart.render(values, name=RELEASE, namespace=NAMESPACE).items() if k.endswith("NOTES.txt")
    )
    assert "kubectl -n team-a port-forward svc/argomlops-tensorboard 6006:6006" in notes
    assert "http://localhost:6006" in notes


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tensorboard": {"enabled": True}}, "tensorboard.logdir is required"),
        ({"tensorboard": {"enabled": True, "logdir": "s3://bucket"}}, "logdir"),
        ({"tensorboard": {"enabled": True, "logdir": "gs://bkt/p", "namespace": "elsewhere"}}, "tensorboard.namespace"),
        ({"tensorboard": {"enabled": True, "logdir": "gs://bkt/p", "prot": 1}}, "prot"),
    ],
)
def test_tensorboard_refuses_bad_values(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=re.escape(message)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
