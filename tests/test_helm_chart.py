"""The Helm chart, rendered by Helm's own engine (helm-python-sdk: Helm v4's Go code, offline).

Every rendered object is validated with kubernetes-validate in strict mode (unknown fields fail) and the
WorkflowTemplate with Argo's published JSON schema. No cluster is involved: what the API server would
do at admission is what these schemas describe.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_render import (
    CHART,
    CHART_LABELS,
    GENERATED,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    ROOT,
    deployment_env,
    find,
    only,
    render,
)

from argomlops.workflows import names

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
