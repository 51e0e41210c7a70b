"""The status of an MLOps object, typed once: the CRD's status schema and every status patch come from here.

`MLOpsStatus` is what `kubectl get mlops -o yaml` shows under `status`. The CRD generator
(`crd.py`) turns its JSON schema into the structural status schema; the handlers write status only
through `status_patch(...)`, which validates the fields by these models and spells them as the CRD
does (camelCase, `costUSD`). A new status field is one line here.

Run figures (`RunFigures`) are what a run's Workflow says of it (see `workflow_summary.py`); the status
holds them for the current run, and `history` keeps a short `HistoryEntry` of each earlier run.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Phase = Literal["Pending", "Queued", "Running", "Retrying", "Succeeded", "Failed", "Invalid"]
"""Phases of an MLOps object; all but Invalid (of the spec) are phases of its current run."""
PHASES: tuple[str, ...] = get_args(Phase)
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
WARNING_PHASES = frozenset({"Failed", "Invalid"})


class StatusSection(BaseModel):
    """Base of the status models: camelCase on the wire, snake_case in Python.

    Unknown keys of a stored status are ignored when it is read (a newer operator may have written them);
    `status_patch` refuses unknown field names, so a typo never becomes a silently dropped write.
    """

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)


# Fields that both the status and a history entry hold: described once.
RunId = Annotated[str | None, Field(description="Id of the run (its UTC start time).")]
Artifacts = Annotated[str | None, Field(description="URI of the run's artifacts: <artifacts>/<run-id>.")]
StartedAt = Annotated[str | None, Field(description="When the run's Workflow started.")]
FinishedAt = Annotated[str | None, Field(description="When the run's Workflow finished.")]
CostUSD = Annotated[float | None, Field(alias="costUSD", description="Estimated GPU cost of all attempts, in USD.")]


class RunFigures(StatusSection):
    """What the current run's Workflow says: mirrored into the status on every Workflow change."""

    stage: str | None = Field(None, description="Stage now running (or last run).")
    epoch: str | None = Field(None, description="Progress of the current stage, N/M steps.")
    percent: str | None = Field(
        None, description="The current stage's progress as a percentage of its steps, e.g. 42%."
    )
    progress: str | None = Field(None, description="Argo's progress of the whole run, N/M.")
    started_at: StartedAt = None
    finished_at: FinishedAt = None
    attempts: int | None = Field(None, description="Training pods started, retries included.")
    preemptions: int | None = Field(
        None, description="Attempts that Argo retried (the template retries only preemptions)."
    )
    gpu_hours: float | None = Field(None, description="GPU-hours of all attempts.")
    cost_usd: CostUSD = None


class HistoryEntry(StatusSection):
    """One earlier run of the object, kept in `status.history`."""

    run_id: RunId = None
    phase: Phase | None = Field(None, description="How the run ended (or its phase, while it still runs).")
    generation: int | None = Field(None, description="Spec generation of the run.")
    artifacts: Artifacts = None
    started_at: StartedAt = None
    finished_at: FinishedAt = None
    cost_usd: CostUSD = None


class MLOpsStatus(RunFigures):
    """What the operator and the run's Workflow report."""

    phase: Phase | None = Field(
        None, description="Pending, Queued, Running, Retrying, Succeeded, Failed (of the run) or Invalid (of the spec)."
    )
    run_phase: Phase | None = Field(None, description="Phase of the current run, even when the spec is Invalid.")
    message: str | None = Field(None, description="Why, in one line.")
    errors: list[str] | None = Field(None, description="One line per bad field of an Invalid spec.")
    observed_generation: int | None = Field(None, description="The spec generation last handled.")
    run_id: RunId = None
    run_generation: int | None = Field(None, description="The spec generation of the current run.")
    workflow: str | None = Field(None, description="Name of the current run's Workflow.")
    config_map: str | None = Field(None, description="Name of the current run's ConfigMap (run.yaml).")
    artifacts: Artifacts = None
    history: list[HistoryEntry] | None = Field(
        None, description="Past runs, newest first (bounded by the operator's history limit)."
    )


RUN_FIGURES: tuple[str, ...] = tuple(RunFigures.model_fields)
"""The snake_case names of the run figures: reset to null when a new run starts."""


def wire_name(field: str) -> str:
    """The status key of a snake_case field name, as the CRD spells it (`cost_usd` → `costUSD`)."""
    info = MLOpsStatus.model_fields[field]
    return info.alias or field


def status_patch(**fields: Any) -> dict[str, Any]:
    """A merge patch of the status from snake_case fields, validated by `MLOpsStatus`; None clears a field.

    Raises:
        TypeError: a name that is not a status field.
    """
    unknown = sorted(set(fields) - set(MLOpsStatus.model_fields))
    if unknown:
        raise TypeError(f"not MLOps status fields: {unknown}")
    return MLOpsStatus.model_validate(fields).model_dump(mode="json", by_alias=True, exclude_unset=True)


def read_status(raw: dict[str, Any] | None) -> MLOpsStatus:
    """An object's stored status as the model (the API server keeps it to the CRD's schema)."""
    return MLOpsStatus.model_validate(raw or {})
