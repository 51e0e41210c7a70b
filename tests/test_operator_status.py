"""Workflow → run status, and the operator settings, as plain functions.

Workflow status is written as the Argo controller writes it (the controller cannot run here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kube.argo import LOCK_MESSAGE, PREEMPTED_MESSAGE, pod_node, retry_node, workflow_status

from argomlops.errors import InputError
from argomlops.operator.settings import DEFAULT_PRICE_PER_GPU_HOUR, load_settings, parse_namespaces
from argomlops.operator.status import is_preempted, run_phase, summarize_workflow

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def wf(status: dict[str, Any] | None, gpus: str = "1") -> dict[str, Any]:
    workflow: dict[str, Any] = {"spec": {"arguments": {"parameters": [{"name": "gpus", "value": gpus}]}}}
    if status is not None:
        workflow["status"] = status
    return workflow


def test_no_status_yet_is_pending_and_free() -> None:
    run = summarize_workflow(wf(None), price_per_gpu_hour=1.0, now=NOW)
    assert run["phase"] == "Pending" and run["costUSD"] == 0.0 and run["attempts"] == 0 and run["stage"] is None


def test_a_node_waiting_for_the_gpu_lock_is_queued() -> None:
    held = pod_node("n1", "vqvae(0)", "Pending", message=LOCK_MESSAGE.format(namespace="ml"))
    assert run_phase(wf(workflow_status("Running", [held]))) == "Queued"
    assert run_phase(wf(workflow_status("Pending", message=LOCK_MESSAGE.format(namespace="ml")))) == "Queued"


def test_a_pod_waiting_for_a_node_is_pending_then_running() -> None:
    waiting = pod_node("n1", "vqvae(0)", "Pending", started="2026-11-27T11:00:00Z")
    assert run_phase(wf(workflow_status("Running", [waiting]))) == "Pending"
    assert run_phase(wf(workflow_status("Running", [dict(waiting, phase="Running")]))) == "Running"


@pytest.mark.parametrize(
    ("exit_code", "message", "preempted"),
    [
        (143, None, True),
        (None, PREEMPTED_MESSAGE, True),
        (None, "Pod was terminated due to imminent node shutdown", True),
        (None, "pod deleted", True),
        (1, "Error (exit code 1)", False),
        (2, "invalid config", False),
        (2, "Pod was terminated in response to imminent node shutdown.", False),
        (1, "OOMKilled on a spot node", False),
    ],
)
def test_preemption_is_exit_143_or_the_node_shutdown_message(
    exit_code: int | None, message: str | None, preempted: bool
) -> None:
    node = pod_node("n", "vqvae(0)", "Failed", exit_code=exit_code, message=message)
    assert is_preempted(node) is preempted


def test_retry_after_failure_that_is_not_preemption_is_running() -> None:
    failed = pod_node("n1", "vqvae(0)", "Failed", started="2026-11-27T10:00:00Z", exit_code=1)
    second = pod_node("n2", "vqvae(1)", "Running", started="2026-11-27T11:00:00Z")
    nodes = [retry_node("r", "vqvae", "Running", ["n1", "n2"]), failed, second]
    assert run_phase(wf(workflow_status("Running", nodes))) == "Running"
    preempted = dict(failed, outputs={"exitCode": "143"})
    nodes = [retry_node("r", "vqvae", "Running", ["n1", "n2"]), preempted, second]
    assert run_phase(wf(workflow_status("Running", nodes))) == "Retrying"


def test_cost_counts_every_attempt_and_the_running_one_until_now() -> None:
    nodes = [
        pod_node(
            "a", "vqvae(0)", "Failed", started="2026-11-27T09:00:00Z", finished="2026-11-27T10:30:00Z", exit_code=143
        ),
        pod_node("b", "vqvae(1)", "Running", started="2026-11-27T11:00:00Z", progress="7/10"),
    ]
    run = summarize_workflow(wf(workflow_status("Running", nodes), gpus="4"), price_per_gpu_hour=0.25, now=NOW)
    assert run["gpuHours"] == pytest.approx(4 * 2.5)
    assert run["costUSD"] == pytest.approx(4 * 2.5 * 0.25)
    assert (run["stage"], run["epoch"], run["attempts"], run["preemptions"]) == ("vqvae", "7/10", 2, 1)


def test_error_is_failed_with_the_failed_pods_message() -> None:
    node = pod_node("a", "pixelcnn(0)", "Error", started="2026-11-27T09:00:00Z", message="OOMKilled")
    run = summarize_workflow(wf(workflow_status("Error", [node])), price_per_gpu_hour=0.1, now=NOW)
    assert (run["phase"], run["message"], run["stage"]) == ("Failed", "OOMKilled", "pixelcnn")


def test_garbage_in_status_is_tolerated() -> None:
    odd = {"phase": "Running", "nodes": {"x": "not a node", "y": {"type": "Pod", "startedAt": "yesterday"}}}
    run = summarize_workflow(wf(odd, gpus="many"), price_per_gpu_hour=0.1, now=NOW)
    # A pod node without a phase has not been seen running; an unreadable time costs nothing.
    assert run["phase"] == "Pending" and run["gpuHours"] == 0.0


def test_settings_from_env_with_defaults_and_clear_errors() -> None:
    assert load_settings({}).price_per_gpu_hour == DEFAULT_PRICE_PER_GPU_HOUR == 0.14
    settings = load_settings(
        {
            "ARGOMLOPS_NAMESPACES": "ml, research",
            "ARGOMLOPS_PRICE_PER_GPU_HOUR": "0.35",
            "ARGOMLOPS_HISTORY_LIMIT": "3",
            "ARGOMLOPS_WATCH_TIMEOUT": "60",
        }
    )
    assert (settings.namespaces, settings.price_per_gpu_hour, settings.history_limit, settings.watch_timeout) == (
        ("ml", "research"),
        0.35,
        3,
        60,
    )
    assert parse_namespaces("*") == () and load_settings({"ARGOMLOPS_NAMESPACES": "*"}).clusterwide
    with pytest.raises(InputError, match="ARGOMLOPS_HISTORY_LIMIT: not an integer: 'ten'"):
        load_settings({"ARGOMLOPS_HISTORY_LIMIT": "ten"})
    with pytest.raises(InputError, match=r"ARGOMLOPS_PRICE_PER_GPU_HOUR: must be at least 0\.0"):
        load_settings({"ARGOMLOPS_PRICE_PER_GPU_HOUR": "-1"})
    for raw in ("nan", "inf"):
        with pytest.raises(InputError, match=f"ARGOMLOPS_PRICE_PER_GPU_HOUR: not a finite number: '{raw}'"):
            load_settings({"ARGOMLOPS_PRICE_PER_GPU_HOUR": raw})
