"""The cost model and the budget rules as plain functions: known durations and prices in, known money out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kube.argo import LOCK_MESSAGE, pod_node, retry_node, workflow_status

from argomlops.config import MLOpsSpec
from argomlops.errors import InputError
from argomlops.operator.accounting import (
    SECONDS_PER_MONTH,
    add_to_month,
    budget_conditions,
    charge,
    run_caps,
    tightest,
    total_usage,
)
from argomlops.operator.charging import Verdict
from argomlops.operator.mlops_status import Cost, Meters, MLOpsStatus, MonthSpend
from argomlops.operator.settings import OperatorSettings, Prices, load_settings
from argomlops.operator.spend import entry_key, month_entries, spend_table
from argomlops.operator.workflow_summary import summarize_workflow

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# A T4 spot node of the chart's defaults: 4 vCPUs at 0.0067, 15 GiB at 0.0009 (0.0403 an hour), a T4 at 0.14.
PRICES = OperatorSettings().prices()


def test_the_chart_defaults_price_a_t4_spot_node() -> None:
    assert PRICES.node_hour == pytest.approx(4 * 0.0067 + 15 * 0.0009)
    assert (PRICES.gpu_hour, PRICES.gib_month, PRICES.class_a_per_1000, PRICES.class_b_per_1000) == (
        0.14,
        0.020,
        0.005,
        0.0004,
    )


def test_a_charge_turns_usage_into_money_by_part() -> None:
    # Three hours of one T4 node, 20 000 uploads and 50 000 reads, 4 GiB kept for 73 hours.
    reading = Meters(node_seconds=3 * 3600, gpu_seconds=3 * 3600, class_a=20_000, class_b=50_000)
    cost = charge(Cost(), Meters(), reading, PRICES, stored_gib=4.0, stored_seconds=73 * 3600)
    assert cost.node == pytest.approx(3 * 0.0403)
    assert cost.gpu == pytest.approx(3 * 0.14)
    assert cost.operations == pytest.approx(20 * 0.005 + 50 * 0.0004)
    assert cost.storage == pytest.approx(4.0 * 0.020 * 73 / 730)
    assert cost.total == pytest.approx(cost.node + cost.gpu + cost.operations + cost.storage)
    assert SECONDS_PER_MONTH == 730 * 3600


def test_a_price_change_applies_from_the_interval_it_is_seen_in() -> None:
    """Two hours at 0.14, then the spot price doubles for the third: not three hours at the new price."""
    dearer = PRICES.model_copy(update={"gpu_hour": 0.28})
    two_hours = Meters(node_seconds=7200, gpu_seconds=7200)
    first = charge(Cost(), Meters(), two_hours, PRICES, stored_gib=None, stored_seconds=0)
    three_hours = Meters(node_seconds=10800, gpu_seconds=10800)
    second = charge(first, two_hours, three_hours, dearer, stored_gib=None, stored_seconds=0)
    assert second.gpu == pytest.approx(2 * 0.14 + 1 * 0.28)
    assert second.gpu != pytest.approx(3 * 0.28)


def test_a_pod_that_ended_before_the_last_charge_is_refunded_the_difference() -> None:
    """A running pod is charged up to "now"; Argo's end time may come a little earlier."""
    charged = Meters(node_seconds=3600, gpu_seconds=3600)
    first = charge(Cost(), Meters(), charged, PRICES, stored_gib=None, stored_seconds=0)
    ended = Meters(node_seconds=3590, gpu_seconds=3590)
    again = charge(first, charged, ended, PRICES, stored_gib=None, stored_seconds=0)
    assert again.gpu == pytest.approx(3590 / 3600 * 0.14)


def test_usage_adds_up_across_the_workflows_of_a_run() -> None:
    stopped = Meters(node_seconds=100, gpu_seconds=200, class_a=5, class_b=1, attempts=2, preemptions=1)
    resumed = Meters(node_seconds=50, gpu_seconds=100, class_a=3, attempts=1)
    assert total_usage([stopped, resumed]) == Meters(
        node_seconds=150, gpu_seconds=300, class_a=8, class_b=1, attempts=3, preemptions=1
    )


def test_the_month_to_date_starts_again_with_a_new_month() -> None:
    november = MonthSpend(month="2026-11", cost=40.0)
    assert add_to_month(november, 2.5, NOW) == MonthSpend(month="2026-12", cost=2.5)
    assert add_to_month(MonthSpend(month="2026-12", cost=1.0), 2.5, NOW) == MonthSpend(month="2026-12", cost=3.5)
    assert add_to_month(None, 0.0, NOW).month == "2026-12"


def test_the_tightest_cap_decides_and_conditions_keep_their_transition_time() -> None:
    caps = run_caps(10.0, 7.0, "ml", 100.0, "2026-12", 85.0)
    tight = tightest(caps)
    assert tight is not None and tight.reason == "NamespaceMonthlyCap" and tight.fraction == pytest.approx(0.85)
    assert tightest(run_caps(None, 7.0, "ml", None, "2026-12", 85.0)) is None
    warned = budget_conditions(None, tight, False, NOW)
    assert [(c.type, c.status, c.reason) for c in warned] == [
        ("BudgetWarning", "True", "NamespaceMonthlyCap"),
        ("OverBudget", "False", "WithinBudget"),
    ]
    assert "namespace ml in 2026-12 spent 85.0000 of 100 USD (85 %)" in warned[0].message
    later = budget_conditions(warned, tight, True, NOW + timedelta(minutes=5))
    assert later[0].last_transition_time == warned[0].last_transition_time  # still warning: same transition
    assert later[1].status == "True" and later[1].last_transition_time == "2026-12-01T12:05:00Z"


def _workflow(status: dict[str, Any] | None, shutdown: bool = False, by: str | None = "MaxCost") -> dict[str, Any]:
    annotations = {"argomlops.dev/stopped-by": by} if shutdown and by else {}
    workflow: dict[str, Any] = {
        "metadata": {"annotations": annotations},
        "spec": {"shutdown": "Stop"} if shutdown else {},
    }
    if status is not None:
        workflow["status"] = status
    return workflow


def _verdict(max_cost: float | None, spent: float, workflow: dict[str, Any], phase: str = "Running") -> Verdict:
    status = MLOpsStatus(run_id="r", workflow="w", phase=phase, run_phase=phase)  # type: ignore[arg-type]
    caps = run_caps(max_cost, spent, "ml", None, "2026-12", spent)
    return Verdict(status, summarize_workflow(workflow, now=NOW), caps)


RUNNING = workflow_status(
    "Running",
    [retry_node("r", "vqvae", "Running", ["p"]), pod_node("p", "vqvae(0)", "Running", started="2026-12-01T11:00:00Z")],
)


def test_a_run_over_its_cap_is_stopped_only_while_a_pod_of_it_runs() -> None:
    assert _verdict(10, 10.0, _workflow(RUNNING)).stop
    assert not _verdict(10, 9.99, _workflow(RUNNING)).stop
    assert not _verdict(None, 1e9, _workflow(RUNNING)).stop
    # Waiting in the GPU queue: no pod, no cost, not stopped.
    queued = _workflow(workflow_status("Pending", message=LOCK_MESSAGE.format(namespace="ml")))
    verdict = _verdict(10, 12.0, queued)
    assert verdict.phase == "Queued" and not verdict.stop
    # Stopped already: not again, and not OverBudget before Argo finished the Workflow.
    stopping = _verdict(10, 10.5, _workflow(RUNNING, shutdown=True))
    assert not stopping.stop and stopping.over and stopping.phase == "Running"


def test_a_stopped_workflow_argo_finished_is_over_budget_until_the_caps_allow() -> None:
    ended = pod_node("p", "vqvae(0)", "Failed", started="2026-12-01T11:00:00Z", finished="2026-12-01T11:30:00Z")
    failed = _workflow(workflow_status("Failed", [ended], message="Stopped with strategy 'Stop'"), shutdown=True)
    verdict = _verdict(10, 10.2, failed)
    assert verdict.phase == "OverBudget" and not verdict.resume and verdict.over
    raised = _verdict(20, 10.2, failed)
    assert raised.phase == "OverBudget" and raised.resume and not raised.over
    # Somebody else stopped it (`argo stop`): Failed, as Argo says, and not resumed by a budget.
    theirs = _verdict(20, 10.2, _workflow(workflow_status("Failed", [ended]), shutdown=True, by=None))
    assert theirs.phase == "Failed" and not theirs.resume
    # The stop came after the last step: the trainer finished, and the run Succeeded.
    done = dict(ended, phase="Succeeded")
    assert _verdict(10, 10.2, _workflow(workflow_status("Succeeded", [done]), shutdown=True)).phase == "Succeeded"


def test_the_summary_reads_the_trainer_reports_and_charges_no_queue_time() -> None:
    report = {
        "checkpoint": "vqvae/checkpoints/step-00000040",
        "gcs": {"classA": 30, "classB": 4, "storedBytes": 1 << 30},
    }
    first = pod_node("a", "vqvae(0)", "Failed", started="2026-12-01T10:00:00Z", finished="2026-12-01T10:30:00Z")
    first["outputs"] = {"exitCode": "143", "parameters": [{"name": "report", "value": json.dumps(report)}]}
    later = {"gcs": {"classA": 12, "classB": 1}}
    second = pod_node("b", "vqvae(1)", "Succeeded", started="2026-12-01T10:31:00Z", finished="2026-12-01T11:01:00Z")
    second["outputs"] = {"parameters": [{"name": "report", "value": json.dumps(later)}]}
    waiting = pod_node("c", "pixelcnn(0)", "Pending", started="2026-12-01T11:02:00Z", message=LOCK_MESSAGE)
    nodes = [retry_node("r", "vqvae", "Succeeded", ["a", "b"]), first, second, waiting]
    run = summarize_workflow(_workflow(workflow_status("Running", nodes)), now=NOW)
    assert run.meters.node_seconds == 3600 and (run.meters.class_a, run.meters.class_b) == (42, 5)
    assert run.checkpoint == "vqvae/checkpoints/step-00000040" and run.stored_bytes == 1 << 30
    assert not run.active  # the only pod left waits in the GPU queue


def test_only_the_budget_changed_is_the_same_run() -> None:
    base = {"artifacts": "gs://bucket/runs", "training": {"vqvae": {"epochs": 3}}}
    digest = MLOpsSpec.model_validate(base).run_digest()
    assert MLOpsSpec.model_validate({**base, "budget": {"maxCost": 25}}).run_digest() == digest
    assert MLOpsSpec.model_validate({**base, "budget": {}}).run_digest() == digest
    changed = {**base, "training": {"vqvae": {"epochs": 4}}, "budget": {"maxCost": 25}}
    assert MLOpsSpec.model_validate(changed).run_digest() != digest


def test_caps_and_prices_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARGOMLOPS_MONTHLY_CAP", "100")
    monkeypatch.setenv("ARGOMLOPS_MONTHLY_CAPS", "team-a=300, sandbox=2.5")
    settings = load_settings()
    assert (settings.monthly_cap_of("team-a"), settings.monthly_cap_of("sandbox"), settings.monthly_cap_of("x")) == (
        300.0,
        2.5,
        100.0,
    )
    monkeypatch.setenv("ARGOMLOPS_MONTHLY_CAP", "")
    assert load_settings().monthly_cap_of("x") is None
    for raw, message in [("team-a", "expected NAMESPACE=USD"), ("team-a=-3", "must be a positive number")]:
        monkeypatch.setenv("ARGOMLOPS_MONTHLY_CAPS", raw)
        with pytest.raises(InputError, match=rf"^ARGOMLOPS_MONTHLY_CAPS: .*{message}"):
            load_settings()
    monkeypatch.delenv("ARGOMLOPS_MONTHLY_CAPS")
    with pytest.raises(InputError, match=r"^--price-per-gib-month: Input should be greater than or equal to 0"):
        load_settings({"price_per_gib_month": "-1"})
    assert isinstance(load_settings().prices(), Prices)


def test_the_spend_table_sums_the_month_of_the_namespace() -> None:
    data = {
        entry_key("2026-12", "fafa", "3f2a91c0-aaaa"): "12.5",
        entry_key("2026-12", "smoke.v2", "77b0e1d4-bbbb"): "0.25",
        entry_key("2026-11", "fafa", "3f2a91c0-aaaa"): "99",
        "2026-12.broken.x": "not a number",
    }
    assert sum(month_entries(data, "2026-12").values()) == pytest.approx(12.75)
    lines = spend_table(data, "2026-12", "100")
    assert lines[1].split() == ["fafa", "12.5000"] and lines[2].split() == ["smoke.v2", "0.2500"]
    assert lines[-2].split() == ["total", "2026-12", "12.7500"] and lines[-1].split()[-1] == "100"
