"""What a run's Workflow says, summarised for the MLOps object's status.

`summarize_workflow` reads only these fields of an `argoproj.io/v1alpha1` Workflow, and tolerates any of
them missing (a Workflow the Argo controller has not touched yet has no status at all):

- `spec.arguments.parameters[name=gpus].value`                   GPUs per pod, for the cost
- `status.phase`        Pending | Running | Succeeded | Failed | Error
- `status.message`      e.g. "Waiting for argo/ConfigMap/argomlops-gpu-queue/nvidia-tesla-t4 lock. ..."
- `status.progress`     "N/M" (Argo sums the pods' progress; the trainer writes epochs to $ARGO_PROGRESS_FILE)
- `status.startedAt`, `status.finishedAt`                       RFC 3339 times
- `status.nodes.<id>`:  `type` (Pod, Retry, DAG, ...), `displayName` (e.g. `vqvae(1)`), `templateName`,
  `phase`, `message`, `progress`, `startedAt`, `finishedAt`, `children` (node ids),
  `outputs.exitCode` (a string, as Argo writes it)

Phases of a run, in the order a person sees them:

- Pending:   no pod has started (no status yet, or pods waiting for a node).
- Queued:    waiting on the GPU semaphore: the Workflow or one of its nodes is held with a message
             "Waiting for ... lock" (Argo keeps such nodes Pending).
- Running:   a training pod runs.
- Retrying:  running again after a preemption: a Retry node that is not finished has more than one
             child, and a failed child ended by preemption (exit code 143, or a message about node
             shutdown / preemption, as GKE writes it).
- Succeeded, Failed (Argo's Failed and Error).

The cost is an estimate: the GPU-hours of every pod attempt (from the pod node's startedAt to its
finishedAt, or to now while it runs; scheduling time counts, as a spot node is paid from boot) times the
GPUs per pod times the price per GPU-hour.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from argomlops.config import STAGE_ORDER
from argomlops.workflows.retry import PREEMPTION_EXPRESSION, should_retry

FINISHED = {"Succeeded", "Failed", "Error", "Skipped", "Omitted"}
_LOCK = re.compile(r"waiting for .*lock", re.IGNORECASE)
_ATTEMPT = re.compile(r"\(\d+\)$")


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as Argo writes it (`2026-11-27T09:01:09Z`), or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _nodes(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = (workflow.get("status") or {}).get("nodes") or {}
    return [node for node in nodes.values() if isinstance(node, dict)] if isinstance(nodes, dict) else []


def is_preempted(node: dict[str, Any]) -> bool:
    """Whether a finished pod node ended by preemption: exactly the endings the template's retry rule retries.

    One definition for both: what Argo retries as a preemption (exit 143 after a SIGTERM checkpoint, GKE's
    node-shutdown message, a deleted pod, ...; never exit 2) is what the status counts and shows as Retrying.
    """
    phase = node.get("phase")
    if phase not in ("Failed", "Error"):
        return False
    raw = str(((node.get("outputs") or {}).get("exitCode")) or "")
    exit_code = int(raw) if raw.lstrip("-").isdigit() else None
    return should_retry(PREEMPTION_EXPRESSION, exit_code, phase, node.get("message") or "")


def _retrying(workflow: dict[str, Any]) -> bool:
    by_id = (workflow.get("status") or {}).get("nodes") or {}
    for node in _nodes(workflow):
        if node.get("type") != "Retry" or node.get("phase") in FINISHED:
            continue
        children = [by_id[child] for child in node.get("children") or [] if isinstance(by_id.get(child), dict)]
        if len(children) > 1 and any(is_preempted(child) for child in children):
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
        for node in _nodes(workflow)
    )


def _stage_of(node: dict[str, Any]) -> str:
    display = _ATTEMPT.sub("", node.get("displayName") or "")
    for candidate in (display, node.get("templateName") or ""):
        if candidate in STAGE_ORDER:
            return candidate
    return display or node.get("templateName") or node.get("name") or ""


def _gpus(workflow: dict[str, Any]) -> int:
    for parameter in ((workflow.get("spec") or {}).get("arguments") or {}).get("parameters") or []:
        if parameter.get("name") == "gpus":
            try:
                return int(parameter.get("value"))
            except (TypeError, ValueError):
                break
    return 1


def run_phase(workflow: dict[str, Any]) -> str:
    """The run's phase (see the module docstring) from a Workflow."""
    phase = (workflow.get("status") or {}).get("phase") or ""
    if phase == "Succeeded":
        return "Succeeded"
    if phase in ("Failed", "Error"):
        return "Failed"
    if _queued(workflow):
        return "Queued"
    if phase != "Running":
        return "Pending"
    if _retrying(workflow):
        return "Retrying"
    pods = [node for node in _nodes(workflow) if node.get("type") == "Pod"]
    if any(node.get("phase") not in (None, "", "Pending") for node in pods):
        return "Running"
    return "Pending"


def summarize_workflow(workflow: dict[str, Any], *, price_per_gpu_hour: float, now: datetime) -> dict[str, Any]:
    """The status fields of the run behind `workflow`: phase, stage, epoch, times, cost, attempts."""
    status = workflow.get("status") or {}
    pods = [node for node in _nodes(workflow) if node.get("type") == "Pod"]
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
    gpu_hours = hours * _gpus(workflow)
    failed = [node for node in pods if node.get("phase") in ("Failed", "Error")]
    message = status.get("message") or (failed[-1].get("message") if failed else None)
    return {
        "phase": run_phase(workflow),
        "stage": _stage_of(current) if current else None,
        "epoch": (current.get("progress") or None) if current else None,
        "progress": status.get("progress") or None,
        "startedAt": status.get("startedAt") or None,
        "finishedAt": status.get("finishedAt") or None,
        "message": message or None,
        "attempts": len(pods),
        "preemptions": sum(1 for node in pods if is_preempted(node)),
        "gpuHours": round(gpu_hours, 4),
        "costUSD": round(gpu_hours * price_per_gpu_hour, 4),
    }
