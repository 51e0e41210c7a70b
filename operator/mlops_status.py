"""The status of an MLOps object, typed once: the CRD's status schema and every status patch come from here.

`MLOpsStatus` is what `kubectl get mlops -o yaml` shows under `status`. The CRD generator
(`crd.py`) turns its JSON schema into the structural status schema; the handlers write status only
through `status_patch(...)`, which validates the fields by these models and spells them as the CRD
does (camelCase, `costUSD`). A new status field is one line here.

Run figures (`RunFigures`) are what a run's Workflows say of it (see `workflow_summary.py`); the status
holds them for the current run, and `history` keeps a short `HistoryEntry` of each earlier run.

The run's account (`RunAccount`) is the operator's own bookkeeping of what the run cost: what each of its
Workflows used (`usage`: a run stopped by its budget and resumed has several), how much of that was
already turned into money (`charged`, at `chargedAt`) and the money by part (`cost`). Cost is accrued
per interval at the prices in force when the operator saw that interval (accounting.py), never the
whole usage times today's price. `monthToDate` is the object's spend in the current calendar month (UTC),
all runs together; the namespace's lives in the `argomlops-spend` ConfigMap (spend.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Phase = Literal["Pending", "Queued", "Running", "Retrying", "Succeeded", "Failed", "Invalid", "OverBudget", "Pruned"]
"""Phases of an MLOps object; all but Invalid (of the spec) are phases of its current run.

OverBudget: the run was stopped by a cap after a checkpoint; it resumes when every cap allows it again.
Pruned: a sweep's trial stopped early by the sweep's pruner after a checkpoint; it is never resumed."""
PHASES: tuple[str, ...] = get_args(Phase)
FINISHED_PHASES = frozenset({"Succeeded", "Failed", "Pruned"})
WARNING_PHASES = frozenset({"Failed", "Invalid", "OverBudget"})


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
CostUSD = Annotated[
    float | None,
    Field(alias="costUSD", description="Estimated cost of the run so far (node, GPU, bucket), in USD."),
]


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
    node_hours: float | None = Field(None, description="Node-hours of all attempts (the machine each pod runs on).")
    gpu_hours: float | None = Field(None, description="GPU-hours of all attempts.")
    checkpoint: str | None = Field(
        None, description="The newest checkpoint the trainer reported, e.g. vqvae/checkpoints/step-00000120."
    )
    stored_gib: float | None = Field(
        None, alias="storedGiB", description="Size of the run folder in the bucket, GiB, as last reported."
    )
    cost_usd: CostUSD = None


class Cost(StatusSection):
    """Money by part, USD, each interval charged at the prices in force when the operator saw it."""

    node: float = Field(0.0, description="The machine (vCPU and memory) of every pod, for the time it ran.")
    gpu: float = Field(0.0, description="The GPUs of every pod, for the time it ran.")
    storage: float = Field(0.0, description="GiB-months of the run folder while the run was in progress.")
    operations: float = Field(0.0, description="Bucket requests: Class A (writes, lists) and Class B (reads).")
    total: float = Field(0.0, description="The sum of the parts.")


class Meters(StatusSection):
    """Quantities that only grow: what a run (or one of its Workflows) used."""

    node_seconds: float = Field(0.0, description="Seconds of pods on their machines, scheduling included.")
    gpu_seconds: float = Field(0.0, description="GPU-seconds of those pods.")
    class_a: int = Field(0, alias="classA", description="Class A bucket requests the trainer reported.")
    class_b: int = Field(0, alias="classB", description="Class B bucket requests the trainer reported.")
    attempts: int = Field(0, description="Training pods started.")
    preemptions: int = Field(0, description="Attempts that Argo retried.")


class WorkflowUsage(Meters):
    """What one Workflow of the run used; `done` once it finished (its figures are then final)."""

    workflow: str = Field(description="The Workflow's name.")
    done: bool = Field(False, description="The Workflow finished; its figures no longer change.")
    started_at: StartedAt = None
    finished_at: FinishedAt = None


class Condition(StatusSection):
    """A Kubernetes-style condition of the budget."""

    type: Literal["BudgetWarning", "OverBudget"] = Field(description="BudgetWarning (80 % of a cap) or OverBudget.")
    status: Literal["True", "False"] = Field(description="Whether the condition holds.")
    reason: str = Field(description="MaxCost, NamespaceMonthlyCap, or WithinBudget.")
    message: str = Field("", description="Which cap, and how much of it is spent.")
    last_transition_time: str = Field(description="When the status last changed.")


class MonthSpend(StatusSection):
    """Spend in one calendar month (UTC)."""

    month: str = Field(description="The month, YYYY-MM.")
    cost: float = Field(0.0, description="USD spent in it.")


class RunAccount(StatusSection):
    """The operator's bookkeeping of the current run's cost (module docstring)."""

    budget: float | None = Field(None, description="The run's own cap (spec.budget.maxCost), USD; null: none.")
    cost: Cost | None = Field(None, description="What the current run cost so far, by part.")
    usage: list[WorkflowUsage] | None = Field(None, description="What each Workflow of the run used, oldest first.")
    charged: Meters | None = Field(None, description="The part of the run's usage already charged into cost.")
    charged_at: str | None = Field(None, description="When the run was last charged.")
    resumes: int | None = Field(None, description="Times the run was resumed after a budget stop.")
    spec_digest: str | None = Field(None, description="Digest of the run's spec without its budget.")
    conditions: list[Condition] | None = Field(None, description="BudgetWarning and OverBudget.")


class HistoryEntry(StatusSection):
    """One earlier run of the object, kept in `status.history`."""

    run_id: RunId = None
    phase: Phase | None = Field(None, description="How the run ended (or its phase, while it still runs).")
    generation: int | None = Field(None, description="Spec generation of the run.")
    artifacts: Artifacts = None
    started_at: StartedAt = None
    finished_at: FinishedAt = None
    cost_usd: CostUSD = None


class MLOpsStatus(RunFigures, RunAccount):
    """What the operator and the run's Workflow report."""

    phase: Phase | None = Field(
        None,
        description="Pending, Queued, Running, Retrying, Succeeded, Failed, OverBudget, Pruned (of the run) or "
        "Invalid (of the spec).",
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
    month_to_date: MonthSpend | None = Field(None, description="This object's spend this month, all runs together.")


RUN_FIGURES: tuple[str, ...] = tuple(RunFigures.model_fields) + tuple(RunAccount.model_fields)
"""The snake_case names of the run figures and account: reset to null when a new run starts."""


def wire_name(field: str) -> str:
    """The status key of a snake_case field name, as the CRD spells it (`cost_usd` → `costUSD`)."""
    info = MLOpsStatus.model_fields[field]
    return info.alias or field


def status_patch(**fields: Any) -> dict[str, Any]:
    """A merge patch of the status from snake_case fields, validated by `MLOpsStatus`; None clears a field.

    Nested objects are written whole, defaults included.

    Raises:
        TypeError: a name that is not a status field.
    """
    unknown = sorted(set(fields) - set(MLOpsStatus.model_fields))
    if unknown:
        raise TypeError(f"not MLOps status fields: {unknown}")
    status = MLOpsStatus.model_validate(fields)
    return {wire_name(name): _wire(getattr(status, name)) for name in fields}


def _wire(value: Any) -> Any:
    """One field's value for a merge patch.

    A nested object goes whole, nulls included: a merge patch keeps the keys it leaves out, so an object
    written with some of its keys would keep stale values in the others. A list replaces the stored one
    whole, so its items leave their unset (None) fields out.
    """
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [_wire_item(item) for item in value]
    return value


def _wire_item(item: Any) -> Any:
    return item.model_dump(mode="json", by_alias=True, exclude_none=True) if isinstance(item, BaseModel) else item


def read_status(raw: dict[str, Any] | None) -> MLOpsStatus:
    """An object's stored status as the model (the API server keeps it to the CRD's schema)."""
    return MLOpsStatus.model_validate(raw or {})
