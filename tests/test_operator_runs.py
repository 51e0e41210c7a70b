"""The operator as a person meets it: apply MLOps objects, then look at ConfigMaps, Workflows, status, events.

The real kopf operator (`argomlops.operator.handlers` in a KopfRunner) and the official kubernetes client
talk to the test API server (tests/kube/) over a loopback socket. The Argo controller cannot run here:
where a test needs Workflow status, it writes it as the controller would (tests/kube/argo.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kube.argo import LOCK_MESSAGE, PREEMPTED_MESSAGE, pod_node, retry_node, workflow_status
from kube.fixtures import RunningKube, eventually, replace_mlops_spec

from argomlops.config import MLOpsSpec
from argomlops.runid import is_run_id
from argomlops.workflows.names import LABEL_MLOPS, LABEL_RUN_ID, TEMPLATE_NAME, k8s_name

ROOT = Path(__file__).resolve().parents[1]
NS = "default"
GROUP, VERSION, PLURAL = "argomlops.dev", "v1alpha1", "mlops"


def manifest(path: str = "examples/fafa.yaml", name: str = "fafa") -> dict[str, Any]:
    """An example manifest, renamed."""
    obj: dict[str, Any] = yaml.safe_load((ROOT / path).read_text())
    obj["metadata"]["name"] = name
    return obj


class Cluster:
    """What `kubectl` would do, through the official client."""

    def __init__(self, kube: RunningKube) -> None:
        self.kube = kube
        self.custom = kubernetes.client.CustomObjectsApi(kube.api())

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create, or replace the spec of, an MLOps object (kubectl apply)."""
        name = obj["metadata"]["name"]
        try:
            self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        except kubernetes.client.ApiException as exc:
            assert exc.status == 404
            created: dict[str, Any] = self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, obj)
            return created
        return replace_mlops_spec(self.custom, NS, name, obj["spec"])

    def mlops(self, name: str = "fafa") -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return obj

    def status(self, name: str = "fafa") -> dict[str, Any]:
        return self.mlops(name).get("status") or {}

    def children(self, plural: str, name: str = "fafa") -> list[dict[str, Any]]:
        return [o for o in self.kube.objects(plural, NS) if o["metadata"].get("labels", {}).get(LABEL_MLOPS) == name]

    def events(self, name: str = "fafa") -> list[dict[str, Any]]:
        return [e for e in self.kube.objects("events", NS) if e.get("involvedObject", {}).get("name") == name]

    def set_workflow_status(self, workflow: str, status: dict[str, Any]) -> None:
        """Write a Workflow's status as the Argo controller does (no status subresource on Workflows)."""
        current = self.custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "workflows", workflow)
        current["status"] = status
        self.custom.replace_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "workflows", workflow, current)


@pytest.fixture()
def cluster(kube: RunningKube) -> Cluster:
    return Cluster(kube)


def settled(cluster: Cluster, name: str = "fafa") -> dict[str, Any]:
    """The status once the current spec generation is handled."""
    return eventually(
        lambda: (
            (s := cluster.status(name)).get("observedGeneration") == cluster.mlops(name)["metadata"]["generation"] and s
        )
    )


def test_create_makes_one_configmap_and_one_workflow_then_reapply_and_change(
    cluster: Cluster, operator_runner: Any
) -> None:
    with operator_runner() as runner:
        created = cluster.apply(manifest())
        status = settled(cluster)
        run_id = status["runId"]
        assert is_run_id(run_id)
        assert status["phase"] == "Pending"
        assert status["artifacts"] == f"gs://antfield/FAFA/artifacts/{run_id}"
        (config_map,) = cluster.children("configmaps")
        (workflow,) = cluster.children("workflows")
        owner = {
            "apiVersion": "argomlops.dev/v1alpha1",
            "kind": "MLOps",
            "name": "fafa",
            "uid": created["metadata"]["uid"],
        }
        for child in (config_map, workflow):
            meta = child["metadata"]
            assert meta["name"] == k8s_name("fafa", run_id) == status["workflow"]
            assert meta["labels"][LABEL_MLOPS] == "fafa" and meta["labels"][LABEL_RUN_ID] == run_id
            (ref,) = meta["ownerReferences"]
            assert {k: ref[k] for k in owner} == owner and ref["controller"] is True
        assert config_map["immutable"] is True
        spec = MLOpsSpec.model_validate(manifest()["spec"])
        assert yaml.safe_load(config_map["data"]["run.yaml"]) == yaml.safe_load(spec.run_config().to_yaml())
        assert workflow["spec"]["workflowTemplateRef"]["name"] == TEMPLATE_NAME
        arguments = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
        assert arguments["run-id"] == run_id and arguments["config-map"] == config_map["metadata"]["name"]
        # kopf posts events from a queue, a moment after the handler returned.
        eventually(lambda: [e["reason"] for e in cluster.events()] == ["RunCreated"])

        # Re-applying the same manifest changes nothing: no new generation, no new run.
        cluster.apply(manifest())
        cluster.apply(manifest())
        assert cluster.mlops()["metadata"]["generation"] == 1

        # A spec change is a new generation and so a new run; the previous run goes to history.
        changed = manifest()
        changed["spec"]["training"]["vqvae"]["epochs"] = 129
        cluster.apply(changed)
        status = eventually(lambda: (s := settled(cluster)).get("runGeneration") == 2 and s)
        assert status["runId"] != run_id
        assert [h["runId"] for h in status["history"]] == [run_id]
        eventually(lambda: len(cluster.children("workflows")) == 2)
        assert len(cluster.children("configmaps")) == 2
        new_map = next(c for c in cluster.children("configmaps") if c["metadata"]["labels"][LABEL_RUN_ID] != run_id)
        assert yaml.safe_load(new_map["data"]["run.yaml"])["training"]["vqvae"]["epochs"] == 129
    assert runner.exception is None
    assert len(cluster.children("workflows")) == 2


def test_field_removed_from_spec_is_absent_from_next_run(cluster: Cluster, operator_runner: Any) -> None:
    """The journal's sequence: a run with resumeFrom, then the manifest re-applied without it."""
    with operator_runner():
        cluster.apply(manifest("examples/fafa-resume.yaml"))
        first = settled(cluster)["runId"]
        cluster.apply(manifest("examples/fafa.yaml"))
        second = eventually(lambda: (s := settled(cluster)).get("runGeneration") == 2 and s)["runId"]
        maps = {c["metadata"]["labels"][LABEL_RUN_ID]: c for c in cluster.children("configmaps")}
        eventually(lambda: len(cluster.children("workflows")) == 2)
    old = yaml.safe_load(maps[first]["data"]["run.yaml"])
    new = yaml.safe_load(maps[second]["data"]["run.yaml"])
    assert old["resumeFrom"] == "gs://antfield/FAFA/artifacts/2026-06-13_09h01m09s"
    assert new.get("resumeFrom") is None
    assert old["stages"] == ["pixelcnn"] and new["stages"] == ["vqvae", "pixelcnn"]


def test_restart_after_status_was_recorded_creates_no_duplicate(cluster: Cluster, operator_runner: Any) -> None:
    """The operator died after recording the run and creating the ConfigMap, before the Workflow."""
    created = cluster.apply(manifest())
    run_id = "2026-06-13_09h01m09s"
    cluster.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "fafa", {"status": {"runId": run_id, "runGeneration": 1, "phase": "Pending"}}
    )
    leftover = {
        "metadata": {
            "name": k8s_name("fafa", run_id),
            "labels": {LABEL_MLOPS: "fafa", LABEL_RUN_ID: run_id},
            "ownerReferences": [
                {
                    "apiVersion": "argomlops.dev/v1alpha1",
                    "kind": "MLOps",
                    "name": "fafa",
                    "uid": created["metadata"]["uid"],
                }
            ],
        },
        "immutable": True,
        "data": {"run.yaml": "made before the restart\n"},
    }
    kubernetes.client.CoreV1Api(cluster.kube.api()).create_namespaced_config_map(NS, leftover)
    with operator_runner():
        status = settled(cluster)
    assert status["runId"] == run_id
    (workflow,) = cluster.children("workflows")
    (config_map,) = cluster.children("configmaps")
    assert workflow["metadata"]["name"] == config_map["metadata"]["name"] == k8s_name("fafa", run_id)
    assert config_map["data"]["run.yaml"] == "made before the restart\n"  # AlreadyExists: left as it was


def test_operator_stopped_midway_and_restarted_makes_each_run_once(cluster: Cluster, operator_runner: Any) -> None:
    names = [f"run{i}" for i in range(6)]
    with operator_runner():
        for name in names:
            cluster.apply(manifest(name=name))
        # Stop while some objects are still being handled.
    with operator_runner():
        for name in names:
            settled(cluster, name)
        eventually(lambda: len(cluster.kube.objects("workflows")) == len(names))
    with operator_runner():  # and once more, with everything handled: nothing new
        eventually(lambda: all(settled(cluster, name) for name in names))
    workflows = cluster.kube.objects("workflows")
    maps = [c for c in cluster.kube.objects("configmaps") if LABEL_MLOPS in c["metadata"].get("labels", {})]
    assert sorted(w["metadata"]["labels"][LABEL_MLOPS] for w in workflows) == names
    assert sorted(c["metadata"]["labels"][LABEL_MLOPS] for c in maps) == names
    for name in names:
        (workflow,) = [w for w in workflows if w["metadata"]["labels"][LABEL_MLOPS] == name]
        assert workflow["metadata"]["labels"][LABEL_RUN_ID] == cluster.status(name)["runId"]


def _wait_phase(cluster: Cluster, phase: str) -> dict[str, Any]:
    return eventually(lambda: (s := cluster.status()).get("phase") == phase and s)


def test_status_mirrors_the_workflow_through_queue_preemption_and_success(
    cluster: Cluster, operator_runner: Any
) -> None:
    """Workflow status is written as the Argo controller would (tests/kube/argo.py)."""
    # A node-hour of 4 vCPUs at 0.01 and 15 GiB at 0.002 is 0.07; a GPU-hour 0.5.
    env = {
        "ARGOMLOPS_PRICE_PER_GPU_HOUR": "0.5", "ARGOMLOPS_PRICE_PER_VCPU_HOUR": "0.01",
        "ARGOMLOPS_PRICE_PER_GIB_HOUR": "0.002", "ARGOMLOPS_NODE_VCPUS": "4", "ARGOMLOPS_NODE_MEMORY_GIB": "15",
        "ARGOMLOPS_HISTORY_LIMIT": "1",
    }  # fmt: skip
    with operator_runner(env=env) as runner:
        spec = manifest()
        spec["spec"]["placement"]["gpus"] = 2
        cluster.apply(spec)
        workflow = settled(cluster)["workflow"]
        start = "2026-11-27T09:00:00Z"

        cluster.set_workflow_status(workflow, workflow_status("Pending", message=LOCK_MESSAGE.format(namespace=NS)))
        _wait_phase(cluster, "Queued")

        first = pod_node("n1", "vqvae(0)", "Running", started="2026-11-27T09:00:00Z", progress="3/128")
        nodes = [retry_node("r1", "vqvae", "Running", ["n1"]), first]
        cluster.set_workflow_status(workflow, workflow_status("Running", nodes, startedAt=start, progress="3/129"))
        status = _wait_phase(cluster, "Running")
        assert (status["stage"], status["epoch"], status["startedAt"]) == ("vqvae", "3/128", start)

        preempted = pod_node(
            "n1", "vqvae(0)", "Failed", started="2026-11-27T09:00:00Z", finished="2026-11-27T10:00:00Z",
            progress="40/128", exit_code=143, message=PREEMPTED_MESSAGE,
        )  # fmt: skip
        second = pod_node("n2", "vqvae(1)", "Running", started="2026-11-27T10:05:00Z", progress="41/128")
        nodes = [retry_node("r1", "vqvae", "Running", ["n1", "n2"]), preempted, second]
        cluster.set_workflow_status(workflow, workflow_status("Running", nodes, startedAt=start))
        status = _wait_phase(cluster, "Retrying")
        assert (status["stage"], status["epoch"], status["attempts"], status["preemptions"]) == (
            "vqvae",
            "41/128",
            2,
            1,
        )

        done = dict(second, phase="Succeeded", finishedAt="2026-11-27T11:05:00Z", progress="128/128")
        prior = pod_node("n3", "pixelcnn(0)", "Running", started="2026-11-27T11:06:00Z", progress="1/64")
        nodes = [retry_node("r1", "vqvae", "Succeeded", ["n1", "n2"]), preempted, done, prior]
        cluster.set_workflow_status(workflow, workflow_status("Running", nodes, startedAt=start))
        status = eventually(lambda: (s := cluster.status()).get("stage") == "pixelcnn" and s)
        assert status["phase"] == "Running"

        prior = dict(prior, phase="Succeeded", finishedAt="2026-11-27T12:06:00Z", progress="64/64")
        nodes = [retry_node("r1", "vqvae", "Succeeded", ["n1", "n2"]), preempted, done, prior]
        end = "2026-11-27T12:06:30Z"
        cluster.set_workflow_status(workflow, workflow_status("Succeeded", nodes, startedAt=start, finishedAt=end))
        status = _wait_phase(cluster, "Succeeded")
        # Three attempts of one hour each, two GPUs each: 6 GPU-hours at 0.5, 3 node-hours at 0.07. The pods
        # were charged up to "now" while the status said they ran; their real ends refunded the difference.
        assert (status["nodeHours"], status["gpuHours"]) == (pytest.approx(3.0), pytest.approx(6.0))
        assert status["cost"] == {
            "node": pytest.approx(0.21), "gpu": pytest.approx(3.0), "storage": 0.0, "operations": 0.0,
            "total": pytest.approx(3.21),
        }  # fmt: skip
        assert status["costUSD"] == pytest.approx(3.21)
        assert status["finishedAt"] == end
        wanted = {"RunCreated", "Queued", "Running", "Retrying", "Stage", "Succeeded"}
        eventually(lambda: wanted <= {e["reason"] for e in cluster.events()})
        first_run = status["runId"]

        # The next run fails; the first one is kept in the (here one-long) history with its cost.
        spec["spec"]["training"]["vqvae"]["epochs"] = 2
        cluster.apply(spec)
        status = eventually(lambda: (s := settled(cluster)).get("runGeneration") == 2 and s)
        failed = pod_node(
            "n1", "vqvae(0)", "Failed", started=start, finished="2026-11-27T09:30:00Z", exit_code=1,
            message="Error (exit code 1)",
        )  # fmt: skip
        cluster.set_workflow_status(
            status["workflow"], workflow_status("Failed", [failed], startedAt=start, message="child failed")
        )
        status = _wait_phase(cluster, "Failed")
        assert status["costUSD"] == pytest.approx(0.5 * (2 * 0.5 + 0.07))  # half an hour, two GPUs
        assert status["history"] == [
            {
                "runId": first_run,
                "phase": "Succeeded",
                "artifacts": f"gs://antfield/FAFA/artifacts/{first_run}",
                "startedAt": start,
                "finishedAt": end,
                "costUSD": pytest.approx(3.21),
                "generation": 1,
            }
        ]
        eventually(lambda: [e["reason"] for e in cluster.events() if e["type"] == "Warning"] == ["Failed"])
    assert runner.exception is None


def test_delete_takes_the_children_and_leaves_nothing_behind(cluster: Cluster, operator_runner: Any) -> None:
    """The test server stands in for the garbage collector: it deletes what ownerReferences tie to the owner."""
    with operator_runner():
        cluster.apply(manifest())
        uid = cluster.mlops()["metadata"]["uid"]
        settled(cluster)
        for child in cluster.children("configmaps") + cluster.children("workflows"):
            assert [ref["uid"] for ref in child["metadata"]["ownerReferences"]] == [uid]
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "fafa")
        eventually(lambda: not cluster.children("workflows") and not cluster.children("configmaps"))
        assert not cluster.kube.objects("mlops")


def test_a_past_run_that_finishes_later_updates_its_history_entry(cluster: Cluster, operator_runner: Any) -> None:
    """Argo's status is written as the controller would: the first run fails after the second started."""
    with operator_runner():
        cluster.apply(manifest())
        first = settled(cluster)
        running = pod_node("n1", "vqvae(0)", "Running", started="2026-11-27T09:00:00Z")
        cluster.set_workflow_status(
            first["workflow"], workflow_status("Running", [running], startedAt=running["startedAt"])
        )
        _wait_phase(cluster, "Running")
        changed = manifest()
        changed["spec"]["training"]["vqvae"]["epochs"] = 3
        cluster.apply(changed)
        eventually(lambda: settled(cluster).get("runGeneration") == 2)
        assert cluster.status()["history"][0]["phase"] == "Running"
        failed = dict(running, phase="Failed", finishedAt="2026-11-27T09:30:00Z", outputs={"exitCode": "1"})
        cluster.set_workflow_status(
            first["workflow"],
            workflow_status("Failed", [failed], startedAt=running["startedAt"], finishedAt="2026-11-27T09:30:00Z"),
        )
        entry = eventually(lambda: (h := cluster.status()["history"][0])["phase"] == "Failed" and h)
        assert entry["runId"] == first["runId"] and entry["finishedAt"] == "2026-11-27T09:30:00Z"
        # A past run is priced at today's prices: half an hour of a T4 node, GPU and machine (settings.py).
        assert entry["costUSD"] == pytest.approx(0.5 * (0.14 + 4 * 0.0067 + 15 * 0.0009))
        assert cluster.status()["phase"] == "Pending"  # the current run is untouched
