"""The kopf handlers of MLOpsSweep objects: validate each spec generation, then step the sweep on a timer.

Registered by importing this module (handlers.py does, so `kopf run -m argomlops.operator.handlers` and
`argomlops operator` serve both kinds). The work is in sweep_control.py; this module only decides when:

- on create, on a change of the spec and on resume: validate the spec (`validate_sweep`, the sweep's
  name, and that a sweep with trials keeps its search); a bad spec is phase Invalid, one line per problem
  in `status.errors`, and a Warning event; a good one records `observedGeneration`;
- every `SWEEP_TICK_SECONDS` while the sweep is not finished: one pass (`step_sweep`). The pass runs
  only for a validated generation, so the change handler and the timer never step one sweep at once.
"""

from __future__ import annotations

from typing import Any

import kopf

from argomlops.config import ConfigError
from argomlops.config.sweep import SweepSpec, sweep_name_problem, validate_sweep
from argomlops.operator import client, objects, sweep_objects
from argomlops.operator.sweep_control import step_sweep
from argomlops.operator.sweep_status import read_sweep_status, sweep_status_patch

SWEEP_TICK_SECONDS = 2.0
FINISHED_SWEEP_PHASES = frozenset({"Invalid", "Succeeded", "Failed"})


def _problems(name: str, raw: Any, search_digest: str | None) -> tuple[SweepSpec | None, list[str]]:
    """The validated spec, or the lines that say what is wrong with it."""
    lines = [problem] if (problem := sweep_name_problem(name)) else []
    try:
        spec = validate_sweep(raw)
    except ConfigError as exc:
        return None, lines + exc.lines
    if search_digest and spec.search_digest() != search_digest:
        lines.append(
            "spec: the search of a sweep with trials is fixed (only budget, trials and parallelism may change): "
            "make a new MLOpsSweep for another search"
        )
    return (None if lines else spec), lines


@kopf.on.create(client.GROUP, client.VERSION, client.SWEEP_PLURAL)
@kopf.on.update(client.GROUP, client.VERSION, client.SWEEP_PLURAL, field="spec")
@kopf.on.resume(client.GROUP, client.VERSION, client.SWEEP_PLURAL)
def validate_sweep_spec(name: str, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Validate the current spec generation: Invalid with its lines, or recorded for the timer to step."""
    if namespace is None:
        return
    sweep = sweep_objects.fresh_sweep(memo, namespace, name)
    if sweep is None or sweep["metadata"].get("deletionTimestamp"):
        return
    generation = int(sweep["metadata"].get("generation") or 1)
    status = read_sweep_status(sweep.get("status"))
    if status.observed_generation == generation:
        return
    spec, lines = _problems(name, sweep.get("spec"), status.search_digest if status.trials else None)
    if spec is None:
        logger.warning(f"sweep spec generation {generation} is invalid: {'; '.join(lines)}")
        count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
        patch = sweep_status_patch(
            phase="Invalid",
            message=f"spec is invalid ({count}): {lines[0]}",
            errors=lines,
            observed_generation=generation,
        )
        sweep_objects.patch_sweep_status(memo, namespace, name, patch)
        kopf.warn(objects.body_of(sweep), reason="Invalid", message="; ".join(lines))
        return
    patch = sweep_status_patch(
        phase="Running" if status.trials else "Pending",
        message=None,
        errors=None,
        observed_generation=generation,
        search_digest=spec.search_digest(),
        trials_total=spec.total_trials,
        budget=spec.budget.max_cost,
    )
    sweep_objects.patch_sweep_status(memo, namespace, name, patch)
    logger.info(f"sweep generation {generation}: {spec.total_trials} trials, {spec.parallelism} at a time")


def _stepping(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in FINISHED_SWEEP_PHASES


@kopf.timer(client.GROUP, client.VERSION, client.SWEEP_PLURAL, interval=SWEEP_TICK_SECONDS, when=_stepping)
def step(name: str, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """One pass over the sweep (sweep_control.py)."""
    if namespace is not None:
        step_sweep(memo, namespace, name, logger)
