"""Workflow → run status, and the operator settings, as plain functions.

Workflow status is written as the Argo controller writes it (the controller cannot run here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kube.argo import LOCK_MESSAGE, PREEMPTED_MESSAGE, pod_node, retry_node, workflow_status

from argomlops.config import Placement
from argomlops.errors import InputError
from argomlops.operator.mlops_status import Meters, MLOpsStatus, status_patch
from argomlops.operator.settings import OperatorSettings, load_settings, parse_namespaces
from argomlops.operator.workflow_summary import retried_attempts, run_phase, summarize_workflow
from argomlops.workflows.placement import placement_json
from argomlops.workflows.run import PLACEMENT_ANNOTATION

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def wf(status: dict[str, Any] | None, gpus: int = 1) -> dict[str, Any]:
    annotations = {PLACEMENT_ANNOTATION: placement_json(Placement(gpus=gpus))}
    workflow: dict[str, Any] = {"metadata": {"annotations": annotations}}
    if status is not None:
        workflow["status"] = status
    return workflow


def test_no_status_yet_is_pending_and_free() -> None:
    run = summarize_workflow(wf(None), now=NOW)
    assert run.phase == "Pending" and run.meters == Meters() and run.stage is None and not run.active


def test_a_node_waiting_for_the_gpu_lock_is_queued() -> None:
    held = pod_node("n1", "vqvae(0)", "Pending", message=LOCK_MESSAGE.format(namespace="ml"))
    assert run_phase(wf(workflow_status("Running", [held]))) == "Queued"
    assert run_phase(wf(workflow_status("Pending", message=LOCK_MESSAGE.format(namespace="ml")))) == "Queued"


def test_a_pod_waiting_for_a_node_is_pending_then_running() -> None:
    waiting = pod_node("n1", "vqvae(0)", "Pending", started="2026-11-27T11:00:00Z")
    assert run_phase(wf(workflow_status("Running", [waiting]))) == "Pending"
    assert run_phase(wf(workflow_status("Running", [dict(waiting, phase="Running")]))) == "Running"


def test_an_attempt_argo_followed_with_another_is_a_preemption() -> None:
    """The operator trusts Argo: the template retries only preemptions, so a retried attempt was one."""
    first = pod_node("n1", "vqvae(0)", "Failed", started="2026-11-27T10:00:00Z", message=PREEMPTED_MESSAGE)
    second = pod_node("n2", "vqvae(1)", "Running", started="2026-11-27T11:00:00Z")
    nodes = [retry_node("r", "vqvae", "Running", ["n1", "n2"]), first, second]
    assert run_phase(wf(workflow_status("Running", nodes))) == "Retrying"
    assert [node["id"] for node in retried_attempts(wf(workflow_status("Running", nodes)))] == ["n1"]


def test_a_failed_last_attempt_is_not_a_preemption() -> None:
    """Argo did not retry it (exit 2, a bug, or the budget spent): the run failed, nothing was preempted."""
    failed = pod_node("n1", "vqvae(0)", "Failed", started="2026-11-27T10:00:00Z", exit_code=2, message="error: x")
    nodes = [retry_node("r", "vqvae", "Failed", ["n1"]), failed]
    run = summarize_workflow(wf(workflow_status("Failed", nodes)), now=NOW)
    assert (run.phase, run.meters.preemptions, run.meters.attempts, run.message) == ("Failed", 0, 1, "error: x")


def test_a_single_running_attempt_is_running_not_retrying() -> None:
    running = pod_node("n1", "vqvae(0)", "Running", started="2026-11-27T10:00:00Z")
    nodes = [retry_node("r", "vqvae", "Running", ["n1"]), running]
    assert run_phase(wf(workflow_status("Running", nodes))) == "Running"


def test_usage_counts_every_attempt_and_the_running_one_until_now() -> None:
    nodes = [
        pod_node(
            "a", "vqvae(0)", "Failed", started="2026-11-27T09:00:00Z", finished="2026-11-27T10:30:00Z", exit_code=143
        ),
        pod_node("b", "vqvae(1)", "Running", started="2026-11-27T11:00:00Z", progress="7/10"),
    ]
    nodes.append(retry_node("r", "vqvae", "Running", ["a", "b"]))
    run = summarize_workflow(wf(workflow_status("Running", nodes), gpus=4), now=NOW)
    assert run.meters.node_seconds == pytest.approx(2.5 * 3600)
    assert run.meters.gpu_seconds == pytest.approx(4 * 2.5 * 3600)
    assert (run.stage, run.epoch, run.meters.attempts, run.meters.preemptions) == ("vqvae", "7/10", 2, 1)
    assert run.active and not run.finished and not run.stopped


def test_error_is_failed_with_the_failed_pods_message() -> None:
    node = pod_node("a", "pixelcnn(0)", "Error", started="2026-11-27T09:00:00Z", message="OOMKilled")
    run = summarize_workflow(wf(workflow_status("Error", [node])), now=NOW)
    assert (run.phase, run.message, run.stage) == ("Failed", "OOMKilled", "pixelcnn")


def test_garbage_in_status_is_tolerated() -> None:
    odd = {"phase": "Running", "nodes": {"x": "not a node", "y": {"type": "Pod", "startedAt": "yesterday"}}}
    workflow = {"metadata": {"annotations": {PLACEMENT_ANNOTATION: "{not json"}}, "status": odd}
    run = summarize_workflow(workflow, now=NOW)
    # A pod node without a phase has not been seen running; an unreadable time costs nothing.
    assert run.phase == "Pending" and run.meters.gpu_seconds == 0.0


def test_settings_from_env_with_defaults_and_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().price_per_gpu_hour == OperatorSettings.model_fields["price_per_gpu_hour"].default == 0.14
    values = {
        "ARGOMLOPS_NAMESPACES": "ml, research",
        "ARGOMLOPS_PRICE_PER_GPU_HOUR": "0.35",
        "ARGOMLOPS_HISTORY_LIMIT": "3",
        "ARGOMLOPS_WATCH_TIMEOUT": "60",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert (settings.namespaces, settings.prices().gpu_hour, settings.history_limit, settings.watch_timeout) == (
        ("ml", "research"),
        0.35,
        3,
        60,
    )
    # A flag wins over its variable.
    assert load_settings({"history_limit": "7", "namespaces": "*"}).history_limit == 7
    assert load_settings({"namespaces": "*"}).clusterwide and parse_namespaces("*") == ()
    monkeypatch.setenv("ARGOMLOPS_HISTORY_LIMIT", "ten")
    with pytest.raises(InputError, match=r"^ARGOMLOPS_HISTORY_LIMIT: Input should be a valid integer.* \(got 'ten'\)$"):
        load_settings()
    with pytest.raises(InputError, match=r"^--history-limit: Input should be greater than or equal to 0 \(got '-1'\)$"):
        load_settings({"history_limit": "-1"})
    monkeypatch.delenv("ARGOMLOPS_HISTORY_LIMIT")
    for raw in ("nan", "inf"):
        monkeypatch.setenv("ARGOMLOPS_PRICE_PER_GPU_HOUR", raw)
        with pytest.raises(InputError, match=r"^ARGOMLOPS_PRICE_PER_GPU_HOUR: Input should be a finite number"):
            load_settings()


def test_status_patches_are_spelled_as_the_crd_and_checked() -> None:
    patch = status_patch(run_id="r", cost_usd=1.5, stage=None, history=[{"runId": "old", "phase": "Failed"}])
    assert patch == {"runId": "r", "costUSD": 1.5, "stage": None, "history": [{"runId": "old", "phase": "Failed"}]}
    with pytest.raises(TypeError, match="cost_us"):
        status_patch(cost_us=1.0)
    with pytest.raises(ValueError, match="phase"):
        status_patch(phase="Sleeping")
    assert set(MLOpsStatus.model_fields) >= {"phase", "run_phase", "history", "cost_usd"}


def test_progress_is_the_newest_pods_share_of_its_steps() -> None:
    """`kubectl get mlops` shows Progress beside Stage and Epoch; a resumed attempt carries on from its step."""
    first = pod_node("n1", "vqvae(0)", "Failed", started="2026-11-27T10:00:00Z", progress="30/120")
    second = pod_node("n2", "vqvae(1)", "Running", started="2026-11-27T11:00:00Z", progress="47/120")
    nodes = [retry_node("r", "vqvae", "Running", ["n1", "n2"]), first, second]
    summary = summarize_workflow(wf(workflow_status("Running", nodes)), now=NOW)
    assert (summary.stage, summary.epoch, summary.percent) == ("vqvae", "47/120", "39%")
    done = pod_node("n3", "pixelcnn(0)", "Succeeded", started="2026-11-27T11:30:00Z", progress="120/120")
    summary = summarize_workflow(wf(workflow_status("Succeeded", [done])), now=NOW)
    assert summary.percent == "100%"
    for progress in (None, "", "x/y", "3/0"):
        node = pod_node("n4", "vqvae(0)", "Running", started="2026-11-27T11:00:00Z", progress=progress)
        assert summarize_workflow(wf(workflow_status("Running", [node])), now=NOW).percent is None
    assert status_patch(percent="39%") == {"percent": "39%"}
