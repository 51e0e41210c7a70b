"""The operator under a misbehaving API server: errors, throttling, conflicts, dropped watches, a kill -9.

The test API server fails requests as a busy real one does (tests/kube/faults.py): 500s, 429s with
Retry-After, writes done but answered 500, 409s on guarded updates, every watch cut after 1-4 s. Under
that, 20 MLOps objects created at once must each end with exactly one ConfigMap, one Workflow and a
settled status (the Workflow's Succeeded mirrored, the spec generation observed), while the operator
process never exits on its own; killed with SIGKILL half-way and started again, it still makes exactly
one of each. The Argo controller is stood in for by the test: every new Workflow succeeds at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
from kube.argo import pod_node, workflow_status
from kube.faults import Faults
from kube.fixtures import RunningKube
from kube.server import KubeServer
from operator_process import in_image, start_operator

from argomlops.workflows.names import LABEL_MLOPS

NS = "faulty"
OBJECTS = 20
FAULTS = {"error_rate": 0.06, "lost_rate": 0.03, "conflict_rate": 0.15, "watch_lifetime": (1.0, 4.0)}


def _create_all(server: KubeServer) -> None:
    """20 MLOps objects at once, stored directly (the test's own writes are not to fail)."""
    for index in range(OBJECTS):
        body = {"metadata": {"name": f"run-{index:02d}", "namespace": NS}, "spec": {"artifacts": "gs://bucket/runs"}}
        server.put_object("argomlops.dev/v1alpha1", "mlops", body)


def _argo_finishes_new_workflows(server: KubeServer) -> None:
    """What the Argo controller would do, at once: each Workflow without a status runs both stages and succeeds."""
    kind = server.kind_of("argoproj.io", "v1alpha1", "workflows")
    for workflow in server.objects("workflows", NS):
        if "status" in workflow:
            continue
        started, finished = "2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z"
        nodes = [
            pod_node(f"{stage}-1", stage, "Succeeded", started=started, finished=finished, exit_code=0)
            for stage in ("vqvae", "pixelcnn")
        ]
        workflow["status"] = workflow_status("Succeeded", nodes, startedAt=started, finishedAt=finished, progress="2/2")
        server.store.replace(kind, NS, workflow["metadata"]["name"], None, workflow)


def _children(kube: RunningKube, plural: str) -> Counter[str]:
    """How many objects of a plural each MLOps object has (the namespace's spend ConfigMap is nobody's)."""
    labels = (obj["metadata"].get("labels") or {} for obj in kube.objects(plural, NS))
    return Counter(label[LABEL_MLOPS] for label in labels if LABEL_MLOPS in label)


def _statuses(kube: RunningKube) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in kube.objects("mlops", NS)}


def _settled(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"]["generation"] and status.get("phase") == "Succeeded"


def _wait(kube: RunningKube, process: subprocess.Popen[str], check: Any, timeout: float) -> None:
    """Let Argo's stand-in work until `check()` holds; the operator must not exit meanwhile."""
    deadline = time.monotonic() + timeout
    while not check():
        assert process.poll() is None, f"the operator exited ({process.returncode}): {process.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, f"not within {timeout} s: {_statuses(kube)}"
        kube.call(_argo_finishes_new_workflows, kube.server)
        time.sleep(0.2)


@pytest.mark.skipif(in_image(), reason="kill -9 of `podman run` leaves its container running: host operator only")
def test_twenty_objects_through_faults_and_a_kill_get_one_run_each(kube: RunningKube) -> None:
    faults = Faults(**FAULTS, seed=15)  # type: ignore[arg-type]
    kube.call(kube.server.misbehave, faults)
    env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig), ARGOMLOPS_NAMESPACES=NS)
    env.update(ARGOMLOPS_TRAINER_IMAGE="registry.example/argomlops-trainer:1", ARGOMLOPS_CHARGE_INTERVAL="1")
    args = ["--standalone", "--watch-timeout", "30"]
    first = start_operator(args, env)
    try:
        kube.call(_create_all, kube.server)
        # Half-way: some runs made, others not yet begun.
        _wait(kube, first, lambda: len(_children(kube, "workflows")) >= OBJECTS // 3, timeout=60)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        first.kill()
        first.communicate()
    made_before_the_kill = len(_children(kube, "workflows"))
    assert made_before_the_kill < OBJECTS, "the kill came too late to interrupt anything"

    second = start_operator(args, env)
    try:
        _wait(kube, second, lambda: all(_settled(o) for o in _statuses(kube).values()), timeout=90)
        # A moment more under faults: nothing is made twice later either.
        end = time.monotonic() + 3
        _wait(kube, second, lambda: time.monotonic() > end, timeout=10)
        assert second.poll() is None
    finally:
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=60)
    names = {f"run-{index:02d}" for index in range(OBJECTS)}
    assert _children(kube, "configmaps") == dict.fromkeys(names, 1)
    assert _children(kube, "workflows") == dict.fromkeys(names, 1)
    for name, obj in _statuses(kube).items():
        status = obj["status"]
        (workflow,) = [w for w in kube.objects("workflows", NS) if w["metadata"]["labels"][LABEL_MLOPS] == name]
        assert status["workflow"] == workflow["metadata"]["name"] and status["runPhase"] == "Succeeded", name
    # It really misbehaved, in every way.
    counts = kube.call(lambda: (dict(kube.server.faults.counts), kube.server.watches.cuts))
    assert min(counts[0].get(kind, 0) for kind in ("500", "429", "409", "lost")) > 0 and counts[1] > 0, counts
    assert second.returncode == 0, output[-3000:]
    print(f"faults {counts[0]}, watches cut {counts[1]}, runs made before the kill {made_before_the_kill}")
