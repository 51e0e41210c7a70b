"""Charging a run for what its Workflows use, and stopping or resuming it at its caps.

`charge_run` is called with a run's current Workflow on every change of that Workflow (the mirror),
at least every `chargeInterval` seconds while the run is in progress (a timer), and right after its
budget changed. In one resourceVersion-guarded status patch it

1. updates what the current Workflow used (`status.usage`; an earlier Workflow of the run, stopped by
   its budget, is final) and charges the growth since the last charge at today's prices (accounting.py);
2. adds the charge to the object's spend this month and reads the namespace's (spend.py);
3. compares the run's cost with its own cap and the namespace's spend with the monthly cap:
   - below 80 % of both: nothing; from 80 %: the BudgetWarning condition and a Warning event;
   - at 100 % while a pod of the run holds a machine: the Workflow is stopped the Argo way
     (`spec.shutdown: Stop`). Argo sends the trainer SIGTERM, the trainer checkpoints the step it is at
     and exits 143, and Argo retries nothing of a Workflow being shut down. A run waiting in the GPU
     queue, or between two attempts, costs nothing and is left alone until a pod of it starts;
   - once the stopped Workflow is finished (Argo finishes it only after the pod's outputs, the
     trainer's report of its checkpoint among them, are in): phase OverBudget, with the cost, the cap
     and the checkpoint in the message;
   - OverBudget and every cap allows it again (maxCost raised, the namespace cap raised, a new month):
     the same run id resumes in a new Workflow (`workflow_name`: `-r2`, `-r3`, ...), whose trainer picks
     up from the checkpoint; the run's cost goes on adding up across its Workflows.

Side effects follow the patch, so a conflict (someone wrote in between) repeats nothing: the spend
entry (an absolute figure), the events, the stop (idempotent) and the new Workflow (AlreadyExists after
a restart). A restarted operator finds an OverBudget run over its cap and leaves it stopped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import kopf
import kubernetes
from pydantic import ValidationError

from argomlops.config import MLOpsSpec
from argomlops.operator import objects, resources
from argomlops.operator.accounting import (
    GIB,
    Cap,
    add_to_month,
    budget_conditions,
    charge,
    condition_holds,
    run_caps,
    tightest,
    total_usage,
)
from argomlops.operator.mlops_status import (
    WARNING_PHASES,
    Cost,
    Meters,
    MLOpsStatus,
    Phase,
    WorkflowUsage,
    read_status,
    status_patch,
)
from argomlops.operator.settings import OperatorSettings
from argomlops.operator.spend import entry_key, month_entries, read_spend, record_spend
from argomlops.operator.workflow_summary import WorkflowSummary, parse_time, summarize_workflow
from argomlops.workflows.names import STOPPED_BY_PRUNER, workflow_name

CHARGED_BY_THE_CLOCK = frozenset({"Pending", "Queued", "Running", "Retrying", "OverBudget"})
"""Run phases in which time costs money (or may start to), or a cap may come to allow a resume: the
timer charges these runs even while their Workflow does not change."""


def _usage(status: MLOpsStatus, summary: WorkflowSummary | None) -> list[WorkflowUsage]:
    """The run's usage per Workflow, the current one updated from its summary unless it is final."""
    assert status.workflow is not None
    usage = list(status.usage or [])
    if not usage or usage[-1].workflow != status.workflow:
        usage.append(WorkflowUsage(workflow=status.workflow))
    current = usage[-1]
    if summary is not None and not current.done:
        usage[-1] = WorkflowUsage(
            **summary.meters.model_dump(),
            workflow=current.workflow,
            done=summary.finished,
            started_at=summary.started_at,
            finished_at=summary.finished_at,
        )
    return usage


def _phase(status: MLOpsStatus, summary: WorkflowSummary | None) -> Phase:
    """The run's phase: Argo's, except that a Workflow the operator stopped and Argo finished is OverBudget,
    or Pruned when the stop was a sweep's pruner's (`STOPPED_BY_PRUNER`).

    A Workflow somebody else stopped (`argo stop`) ends as Argo says: Failed, and is not resumed.
    """
    if summary is None:
        return status.run_phase or "Pending"
    if summary.finished and summary.stopped_by and summary.phase != "Succeeded":
        return "Pruned" if summary.stopped_by == STOPPED_BY_PRUNER else "OverBudget"
    return summary.phase


class Verdict:
    """What the caps make of a run right now."""

    def __init__(self, status: MLOpsStatus, summary: WorkflowSummary | None, caps: list[Cap]) -> None:
        self.tight = tightest(caps)
        over = self.tight is not None and self.tight.fraction >= 1.0
        self.phase = _phase(status, summary)
        # A prune is the sweep's stop, not a budget's: no OverBudget condition, and never a resume.
        self.pruning = summary is not None and summary.stopped_by == STOPPED_BY_PRUNER
        self.stopping = summary is not None and bool(summary.stopped_by) and not summary.finished and not self.pruning
        self.stop = over and summary is not None and summary.active and not summary.stopped
        self.resume = self.phase == "OverBudget" and not over

    @property
    def over(self) -> bool:
        """The run is stopped, or being stopped, by a cap."""
        return self.stop or self.stopping or (self.phase == "OverBudget" and not self.resume)

    def message(self, checkpoint: str | None, fallback: str | None) -> str | None:
        """The one line the status shows."""
        spent = self.tight.describe() if self.tight is not None else "no cap left"
        if self.phase == "Pruned":
            return f"pruned by its sweep; checkpoint {checkpoint or 'none yet'}"
        if self.pruning:
            return "pruned by its sweep: the trainer checkpoints and exits"
        if self.resume:
            return f"resumed after a budget stop ({spent}) from {checkpoint or 'its start'}"
        if self.phase == "OverBudget":
            return f"stopped by its budget: {spent}; checkpoint {checkpoint or 'none yet'}; raise the cap to resume"
        if self.stop or self.over:
            return f"stopping at its budget: {spent}; the trainer checkpoints and exits"
        return fallback


def _figures(summary: WorkflowSummary | None, usage: list[WorkflowUsage], reading: Meters) -> dict[str, Any]:
    """The run figures of the status: the current Workflow's stage and progress, the totals of all of them."""
    fields: dict[str, Any] = {
        "started_at": usage[0].started_at,
        "attempts": reading.attempts,
        "preemptions": reading.preemptions,
        "node_hours": round(reading.node_seconds / 3600.0, 4),
        "gpu_hours": round(reading.gpu_seconds / 3600.0, 4),
    }
    if summary is not None:
        fields.update(
            stage=summary.stage,
            epoch=summary.epoch,
            percent=summary.percent,
            progress=summary.progress,
            finished_at=summary.finished_at,
        )
    return fields


def charge_run(
    memo: kopf.Memo, owner: dict[str, Any], workflow: dict[str, Any] | None, now: datetime, logger: Any
) -> None:
    """Charge `owner`'s current run for what `workflow` used since the last charge; stop or resume it at its caps.

    Raises:
        objects.Conflict: the object changed since it was read (read it again and call again).
    """
    meta = owner["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status = read_status(owner.get("status"))
    if not status.run_id or not status.workflow:
        return
    settings: OperatorSettings = memo.settings
    summary = summarize_workflow(workflow, now=now) if workflow is not None else None
    usage = _usage(status, summary)
    reading = total_usage(usage)
    stored_gib = summary.stored_bytes / GIB if summary and summary.stored_bytes is not None else status.stored_gib
    since = parse_time(status.charged_at) or now
    storing = summary is not None and not summary.finished
    before = status.cost or Cost()
    cost = charge(
        before,
        status.charged or Meters(),
        reading,
        settings.prices(),
        stored_gib=stored_gib,
        stored_seconds=(now - since).total_seconds() if storing else 0.0,
    )
    month = add_to_month(status.month_to_date, cost.total - before.total, now)
    core = kubernetes.client.CoreV1Api(memo.api)
    spend = read_spend(core, namespace)
    key = entry_key(month.month, name, meta.get("uid") or "")
    others = sum(value for entry, value in month_entries(spend, month.month).items() if entry != key)
    cap = settings.monthly_cap_of(namespace)
    caps = run_caps(status.budget, cost.total, namespace, cap, month.month, others + month.cost)
    verdict = Verdict(status, summary, caps)
    spec = _resumable_spec(owner, status) if verdict.resume else None
    if spec is None:
        verdict.resume = False  # not resumable now: an invalid spec, or one of another run (reconcile's)
    checkpoint = (summary.checkpoint if summary else None) or status.checkpoint

    fields = _figures(summary, usage, reading)
    fields.update(
        cost=cost,
        cost_usd=cost.total,
        charged=reading,
        charged_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        usage=usage,
        month_to_date=month,
        checkpoint=checkpoint,
        stored_gib=None if stored_gib is None else round(stored_gib, 6),
        run_phase=verdict.phase,
        conditions=budget_conditions(status.conditions, verdict.tight, verdict.over, now),
    )
    if verdict.resume:
        resumes = (status.resumes or 0) + 1
        new_name = workflow_name(name, status.run_id, resumes)
        fields.update(
            workflow=new_name,
            resumes=resumes,
            usage=[*usage, WorkflowUsage(workflow=new_name)],
            run_phase="Pending",
            finished_at=None,
        )
    if status.phase != "Invalid":  # an invalid newer spec keeps Invalid visible; the run's phase is runPhase
        fields.update(
            phase=fields["run_phase"], message=verdict.message(checkpoint, summary.message if summary else None)
        )
    objects.patch_status(memo, namespace, name, status_patch(**fields), meta["resourceVersion"])

    if spend.get(key) != f"{month.cost:.6f}" and (month.cost or key in spend):
        record_spend(core, namespace, key, month.cost, cap, now)
    _events(owner, status, fields, verdict)
    if verdict.stop:
        assert verdict.tight is not None
        logger.info(f"run {status.run_id}: stopping Workflow {status.workflow}: {verdict.tight.describe()}")
        objects.stop_workflow(memo, namespace, status.workflow, verdict.tight.reason)
    if verdict.resume and spec is not None:
        made = resources.build_workflow(
            name=name,
            namespace=namespace,
            run_id=status.run_id,
            spec=spec,
            generation=status.run_generation or 1,
            resumes=fields["resumes"],
            # The image the run started with: its checkpoints are that code's (a new default may differ).
            image=resources.image_of(workflow) or settings.trainer_image,
        )
        objects.create(memo, made, owner, logger)


def _resumable_spec(owner: dict[str, Any], status: MLOpsStatus) -> MLOpsSpec | None:
    """The object's spec when it still describes the stopped run (valid, same digest), else None."""
    try:
        spec = MLOpsSpec.model_validate(owner.get("spec") or {})
    except ValidationError:
        return None
    return spec if spec.run_digest() == status.spec_digest else None


def _events(owner: dict[str, Any], status: MLOpsStatus, fields: dict[str, Any], verdict: Verdict) -> None:
    """The events a person should see of this charge: budget warnings, stops, resumes, phases, stages."""
    body = objects.body_of(owner)
    run = status.run_id
    warned = condition_holds(fields["conditions"], "BudgetWarning")
    if warned and not condition_holds(status.conditions, "BudgetWarning") and verdict.tight is not None:
        kopf.warn(body, reason="BudgetWarning", message=f"run {run}: {verdict.tight.describe()}")
    if verdict.stop and verdict.tight is not None:
        kopf.warn(body, reason="OverBudget", message=f"run {run}: stopping: {verdict.tight.describe()}")
    if verdict.resume:
        kopf.info(body, reason="Resumed", message=f"run {run}: resumed in Workflow {fields['workflow']}")
        return
    phase = fields["run_phase"]
    if phase != status.run_phase:
        what = f"run {run} is {phase}" + (f": {fields['message']}" if fields.get("message") else "")
        kopf.event(body, type="Warning" if phase in WARNING_PHASES else "Normal", reason=phase, message=what)
    stage = fields.get("stage")
    if stage and stage != status.stage:
        kopf.event(body, type="Normal", reason="Stage", message=f"run {run}: stage {stage}")


def charge_due(status: MLOpsStatus, now: datetime, interval: float) -> bool:
    """Whether a run in progress (or stopped by its budget) was last charged at least `interval` seconds ago."""
    phase = status.run_phase or status.phase
    if not status.run_id or phase not in CHARGED_BY_THE_CLOCK:
        return False
    last = parse_time(status.charged_at)
    return last is None or (now - last).total_seconds() >= interval
