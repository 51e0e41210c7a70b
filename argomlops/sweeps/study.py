"""The search: Optuna's samplers and pruners made from a sweep spec, and a study rebuilt from trial records.

Optuna does the searching and pruning (ask/tell); this module only maps a `SweepSpec` onto it:

- each parameter is a distribution named by its config path: `choices` a categorical one (a list
  choice, e.g. encoderChannels, goes in as its JSON text), `int`/`float` an int or float one;
- `sampler_for(spec, number)`: random and tpe get a seed derived from the sweep's seed and the trial's
  number, so a suggestion depends on the spec, the number and the trials before it, and on nothing a
  process did earlier: a restarted operator, or a laptop sweep resumed after Ctrl-C, suggests what the
  uninterrupted one would have. grid is Optuna's GridSampler with the sweep's seed (trial n takes the
  n-th cell of the grid as the seed shuffles it); the sweep itself stops at the grid's size;
- `pruner_for(spec)`: none, median, successive halving (ASHA) or hyperband, whose steps are the epochs of
  the objective's stage;
- `TrialRecord`: what a trial's object (or journal entry) keeps of it: number, parameters, state, the
  values the pruner saw, the final objective and Optuna's system attributes (a grid cell, ASHA's rungs),
  so `rebuild` can make the study again from the records alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from argomlops.config.sweep import Parameter, SweepSpec, encode_choice

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler

State = Literal["running", "complete", "pruned", "failed"]
FINISHED: frozenset[str] = frozenset({"complete", "pruned", "failed"})


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "Trial 3 finished ..." lines in our logs
    return optuna


@dataclass
class TrialRecord:
    """One trial as its object (cluster) or journal (laptop) keeps it."""

    number: int
    params: dict[str, Any]
    state: State = "running"
    values: dict[int, float] = field(default_factory=dict)
    value: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    message: str | None = None

    def progress_json(self) -> str:
        """What the search learned of the trial (parameters apart), as JSON for an annotation."""
        return json.dumps(
            {
                "state": self.state,
                "values": {str(epoch): value for epoch, value in sorted(self.values.items())},
                "value": self.value,
                "attrs": self.attrs,
                "message": self.message,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, number: int, params: dict[str, Any], text: str | None) -> TrialRecord:
        """A record from its parameters and `progress_json` (absent or unreadable: a trial just started)."""
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        values = {int(epoch): float(value) for epoch, value in (data.get("values") or {}).items()}
        state: State = data["state"] if data.get("state") in ("running", "complete", "pruned", "failed") else "running"
        return cls(number, params, state, values, data.get("value"), data.get("attrs") or {}, data.get("message"))


def derived_seed(seed: int, number: int) -> int:
    """The seed of trial `number`'s sampler: a fixed function of the sweep's seed and the number."""
    return int(hashlib.sha256(f"{seed}/{number}".encode()).hexdigest()[:8], 16)


def _distribution(parameter: Parameter) -> BaseDistribution:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if parameter.choices is not None:
        return CategoricalDistribution([encode_choice(choice) for choice in parameter.choices])
    if parameter.int_range is not None:
        span = parameter.int_range
        return IntDistribution(span.low, span.high, log=span.log, step=span.step)
    assert parameter.float_range is not None
    floats = parameter.float_range
    return FloatDistribution(floats.low, floats.high, log=floats.log, step=floats.step)


def distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """Each parameter's Optuna distribution, by its path."""
    return {parameter.path: _distribution(parameter) for parameter in spec.parameters}


def to_optuna(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Trial parameters as Optuna holds them (list choices as JSON text)."""
    return {p.path: encode_choice(params[p.path]) if p.choices is not None else params[p.path] for p in spec.parameters}


def from_optuna(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's parameters as the values a trial's spec gets (JSON text back to the list it stands for)."""
    decoded = {}
    for parameter in spec.parameters:
        value = params[parameter.path]
        if parameter.choices is not None:
            encoded = [encode_choice(choice) for choice in parameter.choices]
            value = parameter.choices[encoded.index(value)]
        decoded[parameter.path] = value
    return decoded


def sampler_for(spec: SweepSpec, number: int) -> BaseSampler:
    """The sampler that suggests trial `number` (module docstring)."""
    optuna = _optuna()
    if spec.sampler == "grid":
        space = {p.path: [encode_choice(choice) for choice in p.choices or []] for p in spec.parameters}
        grid: BaseSampler = _sweep_grid_class()(space, seed=spec.seed)
        return grid
    seed = derived_seed(spec.seed, number)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.tpe_startup_trials)


@functools.cache
def _sweep_grid_class() -> type:
    """Optuna's GridSampler, except that telling the last cell's result does not call `study.stop()`.

    GridSampler stops an `optimize` loop once every cell is done; with ask/tell there is no loop to stop
    (Optuna raises then), and the sweep itself stops at the grid's size (`SweepSpec.total_trials`).
    """
    from optuna.samplers import GridSampler

    class SweepGrid(GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return SweepGrid


def pruner_for(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """The pruner of the sweep; its steps are the epochs of the objective's stage."""
    optuna = _optuna()
    pruner = spec.pruner
    if pruner.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=pruner.startup_trials, n_warmup_steps=pruner.warmup_epochs)
    if pruner.type == "successiveHalving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner.min_epochs, reduction_factor=pruner.reduction_factor
        )
    if pruner.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner.min_epochs, max_resource=spec.epochs, reduction_factor=pruner.reduction_factor
        )
    return optuna.pruners.NopPruner()


def new_study(spec: SweepSpec, name: str, storage: Any = None) -> optuna.Study:
    """The sweep's study (created, or loaded from `storage` when it exists there); named after the sweep.

    The name matters: Hyperband assigns a trial's bracket from the study name and the trial's number.
    """
    optuna = _optuna()
    return optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=storage is not None,
        direction=spec.objective.direction,
        sampler=sampler_for(spec, 0),
        pruner=pruner_for(spec),
    )


_STATES = {"running": "RUNNING", "complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}


def rebuild(spec: SweepSpec, name: str, records: list[TrialRecord]) -> optuna.Study:
    """An in-memory study holding `records` as trials 0..n-1 (a number with no record is a failed trial)."""
    from optuna.trial import TrialState, create_trial

    study = new_study(spec, name)
    dists = distributions(spec)
    by_number = {record.number: record for record in records}
    for number in range(max(by_number, default=-1) + 1):
        record = by_number.get(number)
        if record is None:
            study.add_trial(create_trial(state=TrialState.FAIL))
            continue
        state = TrialState[_STATES[record.state]]
        if state == TrialState.COMPLETE and record.value is None:
            state = TrialState.FAIL  # a complete trial without its objective cannot guide the search
        study.add_trial(
            create_trial(
                state=state,
                value=record.value if state == TrialState.COMPLETE else None,
                params=to_optuna(spec, record.params),
                distributions=dists,
                intermediate_values=dict(record.values),
                system_attrs=dict(record.attrs),
            )
        )
    return study


def suggest(study: optuna.Study, spec: SweepSpec) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Ask the study for its next trial: (number, parameters as the trial's spec gets them, system attrs).

    The trial is left RUNNING in the study: a persistent study keeps it; a rebuilt one is thrown away,
    and the trial lives on in the object made from what this returns.
    """
    number = len(study.trials)
    study.sampler = sampler_for(spec, number)
    trial = study.ask(distributions(spec))
    assert trial.number == number, (trial.number, number)
    frozen = study.trials[number]
    return number, from_optuna(spec, trial.params), dict(frozen.system_attrs)


def report(study: optuna.Study, number: int, values: dict[int, float], epochs: int) -> int | None:
    """Report the epochs of `values` the trial has not reported yet, in order; returns the epoch it was pruned at.

    The pruner decides after each epoch, as it would if the trial reported live, so an operator that
    read several epochs at once decides as if it had seen them one by one. A trial whose values reach its
    last epoch (`epochs`) is never pruned: it has finished training, so stopping it saves nothing, and the
    verdict would throw away a complete result. (An operator that reads a trial's curve late, after a
    better trial completed, would otherwise prune a trial whose success is already on its way.)
    """
    optuna = _optuna()
    frozen = study.trials[number]
    trial = optuna.trial.Trial(study, frozen._trial_id)
    finished = max(values, default=0) >= epochs
    for epoch in sorted(values):
        if epoch in frozen.intermediate_values:
            continue
        trial.report(values[epoch], epoch)
        if not finished and trial.should_prune():
            return epoch
    return None


def record_of(study: optuna.Study, spec: SweepSpec, number: int, state: State) -> TrialRecord:
    """The record of trial `number` as the study holds it now (values and attributes), in `state`."""
    frozen = study.trials[number]
    return TrialRecord(
        number=number,
        params=from_optuna(spec, frozen.params),
        state=state,
        values=dict(frozen.intermediate_values),
        value=frozen.value,
        attrs=dict(frozen.system_attrs),
    )


def best_number(study: optuna.Study) -> int | None:
    """The number of the best complete trial, or None while none is complete."""
    complete = [(float(t.value), t.number) for t in study.trials if t.state.name == "COMPLETE" and t.value is not None]
    if not complete:
        return None
    sign = 1.0 if study.direction.name == "MINIMIZE" else -1.0
    return min(complete, key=lambda pair: (sign * pair[0], pair[1]))[1]  # ties: the earlier trial
