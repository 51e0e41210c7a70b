"""The status of an MLOpsSweep, typed once: the CRD's status schema and every status patch come from here.

`SweepStatus` is what `kubectl get mlopssweep NAME -o yaml` shows under `status`: the sweep's phase, how
many trials are done of how many, the best trial and its objective, what all trials cost together, and
one `SweepTrial` per trial (parameters, state, objective, cost). The operator recomputes it from the trial
objects on every pass (sweep_control.py), so it is a view: nothing in it is needed to rebuild the study.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from argomlops.operator.mlops_status import CostUSD, Phase, StatusSection

SweepPhase = Literal["Pending", "Running", "Succeeded", "Failed", "OverBudget", "Invalid"]
"""Pending (no trial yet), Running, Succeeded (every trial done, one complete at least), Failed (every
trial done, none complete), OverBudget (the budget is spent and no trial holds a machine), Invalid."""
SWEEP_PHASES: tuple[str, ...] = get_args(SweepPhase)
TrialState = Literal["Running", "Complete", "Pruned", "Failed"]
"""A trial as the search sees it: Running (queued, running, or paused by the sweep's budget) or finished."""

ANY_FIELDS: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
"""Parameter values are any YAML value (numbers, strings, lists): kept as written, keyed by config path."""


class SweepTrial(StatusSection):
    """One trial of the sweep."""

    number: int = Field(description="The trial's number, from 0.")
    name: str = Field(description="Its MLOps object.")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The value of each parameter, by config path.", json_schema_extra=ANY_FIELDS
    )
    state: TrialState = Field(description="Running, Complete, Pruned or Failed.")
    phase: Phase | None = Field(None, description="The phase of its MLOps object.")
    objective: float | None = Field(
        None, description="The objective: final (Complete), or the last value the pruner saw (Pruned)."
    )
    epochs: int | None = Field(None, description="Epochs of the objective's stage it reported.")
    cost_usd: CostUSD = None
    message: str | None = Field(None, description="Why it was pruned or failed.")


class SweepStatus(StatusSection):
    """What the operator reports of the sweep."""

    phase: SweepPhase | None = Field(
        None, description="Pending, Running, Succeeded, Failed, OverBudget (of the sweep) or Invalid (of the spec)."
    )
    message: str | None = Field(None, description="Why, in one line.")
    errors: list[str] | None = Field(None, description="One line per bad field of an Invalid spec.")
    observed_generation: int | None = Field(None, description="The spec generation last validated.")
    search_digest: str | None = Field(
        None, description="Digest of the search (all but budget, trials, parallelism), fixed once trials exist."
    )
    progress: str | None = Field(None, description="Trials done of the trials to run, N/M.")
    trials_done: int | None = Field(None, description="Trials complete, pruned or failed.")
    trials_total: int | None = Field(None, description="Trials the sweep runs.")
    trials_running: int | None = Field(None, description="Trials in progress now.")
    best_trial: str | None = Field(None, description="The MLOps object of the best complete trial.")
    best_objective: float | None = Field(None, description="Its objective.")
    best_parameters: dict[str, Any] | None = Field(
        None, description="Its parameters, by config path.", json_schema_extra=ANY_FIELDS
    )
    cost_usd: float | None = Field(
        None, alias="costUSD", description="What all trials cost so far (the sum of their costUSD), USD."
    )
    budget: float | None = Field(None, description="The sweep's budget.maxCost, USD; null: none.")
    trials: list[SweepTrial] | None = Field(None, description="Every trial, by number.")


def _wire(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [_wire(item) for item in value]
    return value


def sweep_status_patch(**fields: Any) -> dict[str, Any]:
    """A merge patch of the status from snake_case fields, validated by `SweepStatus`; None clears a field.

    Raises:
        TypeError: a name that is not a status field.
    """
    unknown = sorted(set(fields) - set(SweepStatus.model_fields))
    if unknown:
        raise TypeError(f"not MLOpsSweep status fields: {unknown}")
    status = SweepStatus.model_validate(fields)
    wire = {}
    for name in fields:
        info = SweepStatus.model_fields[name]
        wire[info.alias or name] = _wire(getattr(status, name))
    return wire


def read_sweep_status(raw: dict[str, Any] | None) -> SweepStatus:
    """An MLOpsSweep's stored status as the model."""
    return SweepStatus.model_validate(raw or {})
