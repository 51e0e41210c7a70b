"""What a run's Workflow says, summarised for the MLOps object's status.

`summarize_workflow` reads only these fields of an `argoproj.io/v1alpha1` Workflow, and tolerates any of
them missing (a Workflow the Argo controller has not touched yet has no status at all):

- `metadata.annotations["argomlops.dev/placement"]`  the run's placement as JSON (GPUs per pod, for the cost)
- `status.phase`        Pending | Running | Succeeded | Failed | Error
- `status.message`      e.g. "Waiting for argo/ConfigMap/argomlops-gpu-queue/nvidia-tesla-t4 lock. ..."
- `status.progress`     "N/M" (Argo sums the pods' progress; the trainer writes steps to $ARGO_PROGRESS_FILE)
- `status.startedAt`, `status.finishedAt`                       RFC 3339 times
- `status.nodes.<id>`:  `type` (Pod, Retry, DAG, ...), `displayName` (e.g. `vqvae(1)`), `templateName`,
  `phase`, `message`, `progress`, `startedAt`, `finishedAt`, `children` (node ids, in attempt order)

Stage, Epoch (the newest pod's N/M steps) and Progress (the same as a percentage) follow the newest pod:
a retried attempt reports the step it resumed at, so the percentage never goes back to 0 after a
preemption. The Workflow's own `status.progress` sums its leaf nodes, and M grows as nodes are added
(Argo's docs/progress.md): between the stages it reads 100%, so it is kept as it is but not turned into
a percentage.

Phases of a run, in the order a person sees them:

- Pending:   no pod has started (no status yet, or pods waiting for a node).
- Queued:    waiting on the GPU semaphore: the Workflow or one of its nodes is held with a message
             "Waiting for ... lock" (Argo keeps such nodes Pending).
- Running:   a training pod runs.
- Retrying:  running again after Argo retried a failed attempt: a Retry node that is not finished has a
             failed child followed by another attempt.
- Succeeded, Failed (Argo's Failed and Error).

Preemptions are read from the node tree, not re-derived: the template retries only preemptions (exit 143,
node shutdown, pod deleted; never exit 2: `argomlops.workflows.retry`), so every failed attempt that Argo
followed with another one was a preemption. Argo has already decided; the operator counts what it did.

The cost is an estimate: the GPU-hours of every pod attempt (from the pod node's startedAt to its
finishedAt, or to now while it runs; scheduling time counts, as a spot node is paid from boot) times the
GPUs per pod times the price per GPU-hour.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, ValidationError

from argomlops.config import STAGE_ORDER, Placement
from argomlops.operator.mlops_status import Phase, RunFigures
from argomlops.workflows.run import PLACEMENT_ANNOTATION

FINISHED = {"Succeeded", "Failed", "Error", "Skipped", "Omitted"}
FAILED = {"Failed", "Error"}
_LOCK = re.compile(r"waiting for .*lock", re.IGNORECASE)
_ATTEMPT = re.compile(r"\(\d+\)$")


class WorkflowSummary(RunFigures):
    """The run figures of a Workflow, plus the run's phase and the one line that explains it."""

    phase: Phase = Field("Pending", description="The run's phase (module docstring).")
    message: str | None = Field(None, description="Argo's message, or the failed pod's.")

    def figures(self) -> dict[str, Any]:
        """The run figures alone, by snake_case name (for `status_patch`)."""
        return {name: getattr(self, name) for name in RunFigures.model_fields}


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as Argo writes it (`2026-11-27T09:01:09Z`), or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _nodes(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nodes = (workflow.get("status") or {}).get("nodes") or {}
    if not isinstance(nodes, dict):
        return {}
    return {key: node for key, node in nodes.items() if isinstance(node, dict)}


def retried_attempts(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The failed pod attempts that Argo followed with another attempt of the same task."""
    nodes = _nodes(workflow)
    retried = []
    for node in nodes.values():
        if node.get("type") != "Retry":
            continue
        children = [nodes[child] for child in node.get("children") or [] if child in nodes]
        retried += [child for child in children[:-1] if child.get("phase") in FAILED]
    return retried


def _retrying(workflow: dict[str, Any]) -> bool:
    nodes = _nodes(workflow)
    for node in nodes.values():
        if node.get("type") != "Retry" or node.get("phase") in FINISHED:
            continue
        children = [nodes[child] for child in node.get("children") or [] if child in nodes]
        if len(children) > 1 and any(child.get("phase") in FAILED for child in children[:-1]):
            return True
    return False


def _queued(workflow: dict[str, Any]) -> bool:
    status = workflow.get("status") or {}
    if status.get("phase") in FINISHED:
        return False
    if _LOCK.search(status.get("message") or ""):
        return True
    return any(
        node.get("phase") in (None, "", "Pending") and _LOCK.search(node.get("message") or "")
        for node in _nodes(workflow).values()
    )


def _stage_of(node: dict[str, Any]) -> str:
    display = _ATTEMPT.sub("", node.get("displayName") or "")
    for candidate in (display, node.get("templateName") or ""):
        if candidate in STAGE_ORDER:
            return candidate
    return display or node.get("templateName") or node.get("name") or ""


def percent_of(progress: str | None) -> str | None:
    """`"42/100"` -> `"42%"` (rounded down: 100% only when done); None when it is no N/M with M > 0."""
    done, _, total = (progress or "").partition("/")
    try:
        numbers = int(done), int(total)
    except ValueError:
        return None
    if numbers[1] <= 0 or numbers[0] < 0:
        return None
    return f"{min(100, numbers[0] * 100 // numbers[1])}%"


def placement_of(workflow: dict[str, Any]) -> Placement:
    """The placement the Workflow was made with (its annotation), or the default one when unreadable."""
    raw = ((workflow.get("metadata") or {}).get("annotations") or {}).get(PLACEMENT_ANNOTATION)
    try:
        return Placement.model_validate(json.loads(raw)) if raw else Placement()
    except (ValueError, ValidationError):
        return Placement()


def run_phase(workflow: dict[str, Any]) -> Phase:
    """The run's phase (see the module docstring) from a Workflow."""
    phase = (workflow.get("status") or {}).get("phase") or ""
    if phase == "Succeeded":
        return "Succeeded"
    if phase in FAILED:
        return "Failed"
    if _queued(workflow):
        return "Queued"
    if phase != "Running":
        return "Pending"
    if _retrying(workflow):
        return "Retrying"
    pods = [node for node in _nodes(workflow).values() if node.get("type") == "Pod"]
    if any(node.get("phase") not in (None, "", "Pending") for node in pods):
        return "Running"
    return "Pending"


def summarize_workflow(workflow: dict[str, Any], *, price_per_gpu_hour: float, now: datetime) -> WorkflowSummary:
    """The status figures of the run behind `workflow`: phase, stage, epoch, times, cost, attempts."""
    status = workflow.get("status") or {}
    pods = [node for node in _nodes(workflow).values() if node.get("type") == "Pod"]
    # The newest pod is the stage that runs now (or ran last).
    pods.sort(key=lambda node: (parse_time(node.get("startedAt")) or now, node.get("displayName") or ""))
    current = pods[-1] if pods else None
    hours = 0.0
    for node in pods:
        started = parse_time(node.get("startedAt"))
        if started is None:
            continue
        finished = parse_time(node.get("finishedAt")) or now
        hours += max(0.0, (finished - started).total_seconds()) / 3600.0
    gpu_hours = hours * placement_of(workflow).gpus
    failed = [node for node in pods if node.get("phase") in FAILED]
    message = status.get("message") or (failed[-1].get("message") if failed else None)
    return WorkflowSummary(
        phase=run_phase(workflow),
        stage=_stage_of(current) if current else None,
        epoch=(current.get("progress") or None) if current else None,
        percent=percent_of(current.get("progress")) if current else None,
        progress=status.get("progress") or None,
        started_at=status.get("startedAt") or None,
        finished_at=status.get("finishedAt") or None,
        message=message or None,
        attempts=len(pods),
        preemptions=len(retried_attempts(workflow)),
        gpu_hours=round(gpu_hours, 4),
        cost_usd=round(gpu_hours * price_per_gpu_hour, 4),
    )
