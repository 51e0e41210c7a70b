"""One pass over a sweep, every couple of seconds: learn from the trials, prune, hold the budget, start trials, report.

Everything the pass needs is in the trial objects (sweep_objects.py): the study is rebuilt from them each
time (`study.rebuild`), so a restarted operator carries on where the last pass left off, and makes no
trial twice (trial names are `<sweep>-t<number>`: AlreadyExists). In order:

1. Learn. A trial's MLOps phase says where it is: Succeeded → its objective is read from its run folder
   (`objective.final_value`); Failed or Invalid → failed; Pruned → pruned; OverBudget while the sweep's
   budget holds it (`held-by-sweep`) → still running, paused; OverBudget by its own budget → done early,
   like a pruned trial. A running trial's metrics.jsonl is read when its progress moved since the last
   read (trial_metrics.py says why the operator reads the bucket, and what it may read).
2. Prune. The new epochs of each running trial are reported to the pruner in order (`study.report`); a
   pruned trial's verdict is written to it first, then its Workflow is stopped the way budgets stop runs
   (`spec.shutdown: Stop`, stopped-by `Pruned`): the trainer checkpoints and exits, the run ends Pruned.
3. Budget. The sweep's cost is what its trials cost together. Once it reaches `budget.maxCost`, each trial
   in progress gets its own `budget.maxCost` lowered to what it has cost, so the budget code stops it
   after a checkpoint (OverBudget) exactly as it stops any run; raising the sweep's budget gives each
   trial its own cap back, and the budget code resumes it from its checkpoint.
4. Start. While the budget allows, new trials are asked of the study up to `parallelism` in progress.
5. Report. The status (sweep_status.py): trials done of total, the best, cost, every trial; events for a
   new best, a pruned trial, the budget, the end.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from argomlops.config.sweep import SweepSpec
from argomlops.operator import objects, sweep_objects
from argomlops.operator.objects import Conflict
from argomlops.operator.sweep_status import SweepTrial, read_sweep_status, sweep_status_patch
from argomlops.operator.trial_metrics import UnreadableRunFile, read_run_file
from argomlops.sweeps import study as search
from argomlops.sweeps.objective import ObjectiveMissing, epoch_values, final_value, metrics_file
from argomlops.workflows.names import STOPPED_BY_PRUNER

IN_PROGRESS = frozenset({None, "Pending", "Queued", "Running", "Retrying"})
HOLDING_A_MACHINE = frozenset({"Running", "Retrying"})
NO_COST_YET = 1e-9
"""The cap of a trial that has cost nothing (still queued): a cap must be above 0; its first pod is stopped."""
STATE_NAMES = {"running": "Running", "complete": "Complete", "pruned": "Pruned", "failed": "Failed"}


@dataclass
class Trial:
    """One trial object during a pass: its stored record, what this pass learned, what it should persist."""

    obj: dict[str, Any]
    record: search.TrialRecord
    new_values: dict[int, float] = field(default_factory=dict)
    changed: bool = False

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Trial:
        """The trial of an MLOps object."""
        return cls(obj, sweep_objects.record_of(obj))

    @property
    def name(self) -> str:
        """Its MLOps object's name."""
        return str(self.obj["metadata"]["name"])

    @property
    def status(self) -> dict[str, Any]:
        """Its MLOps object's status."""
        return self.obj.get("status") or {}

    @property
    def phase(self) -> str | None:
        """Its MLOps object's phase."""
        return self.status.get("phase")

    @property
    def hold(self) -> dict[str, Any] | None:
        """The sweep's budget's hold on it (held now, or released and not yet resumed), or None."""
        return sweep_objects.hold_of(self.obj)

    @property
    def state(self) -> search.State:
        """Where the search stands with it: a verdict written on it, else what its phase says."""
        if self.record.state in search.FINISHED:
            return self.record.state
        if self.phase == "OverBudget" and self.hold is None:
            return "pruned"  # its own budget stopped it: done early, with the epochs it reported
        return "running"

    def for_search(self) -> search.TrialRecord:
        """The record the rebuilt study gets (with the state the phase implies)."""
        return dataclasses.replace(self.record, state=self.state)


def _progress_marker(trial: Trial) -> tuple[Any, ...]:
    """What changes when a trial's run moves on: its phase, stage and step count."""
    return (trial.phase, trial.status.get("stage"), trial.status.get("epoch"))


def _reads(memo: kopf.Memo) -> dict[str, tuple[Any, ...]]:
    """The progress marker of each trial (by uid) when its metrics were last read, kept in the sweep's memo."""
    reads: dict[str, tuple[Any, ...]] = memo.setdefault("sweep_reads", {})
    return reads


def learn(memo: kopf.Memo, spec: SweepSpec, trial: Trial, problems: list[str]) -> None:
    """Step 1 for one trial (module docstring): update its record from its phase and its run's files."""
    phase, record = trial.phase, trial.record
    if record.state in search.FINISHED:
        return
    if phase in ("Failed", "Invalid"):
        trial.record = dataclasses.replace(record, state="failed", message=trial.status.get("message") or phase)
        trial.changed = True
        return
    final = phase in ("Succeeded", "Pruned")
    run = trial.status.get("artifacts")
    if not run:
        return  # no run started yet
    key, marker = trial.obj["metadata"].get("uid") or trial.name, _progress_marker(trial)
    if not final and (not spec.objective.per_epoch or _reads(memo).get(key) == marker):
        return  # nothing new to prune on
    try:
        text = read_run_file(run, metrics_file(spec.objective))
    except UnreadableRunFile as exc:
        problems.append(f"{trial.name}: {exc}")
        return  # read again on the next pass
    _reads(memo)[key] = marker
    values = epoch_values(text, spec.objective.key) if spec.objective.per_epoch else {}
    if phase == "Pruned":  # stopped before its verdict was written (the operator restarted in between)
        trial.record = dataclasses.replace(record, state="pruned", values={**values, **record.values})
        trial.changed = True
    elif phase == "Succeeded":
        try:
            value = final_value(spec.objective, text, spec.epochs)
        except ObjectiveMissing as exc:
            trial.record = dataclasses.replace(record, state="failed", message=str(exc))
        else:
            trial.record = dataclasses.replace(
                record, state="complete", value=value, values={**values, **record.values}
            )
        trial.changed = True
    else:
        trial.new_values = {epoch: v for epoch, v in values.items() if epoch not in record.values}


def prune(memo: kopf.Memo, spec: SweepSpec, study: Any, trial: Trial, sweep: dict[str, Any]) -> None:
    """Step 2 for one trial: report its new epochs; a pruned trial gets its verdict, then its Workflow is stopped."""
    if trial.state == "running" and trial.new_values:
        epoch = search.report(study, trial.record.number, trial.new_values, spec.epochs)
        state: search.State = "running" if epoch is None else "pruned"
        updated = search.record_of(study, spec, trial.record.number, state)
        if epoch is not None:
            value = updated.values[epoch]
            updated.message = f"pruned at epoch {epoch} of {spec.epochs}: {spec.objective.key} {value:.5g}"
            kopf.info(objects.body_of(sweep), reason="Pruned", message=f"trial {trial.name} {updated.message}")
            kopf.info(objects.body_of(trial.obj), reason="Pruned", message=f"by sweep: {updated.message}")
        trial.record, trial.changed = updated, True
    if trial.changed:
        sweep_objects.patch_trial(memo, trial.obj, sweep_objects.record_patch(trial.record))
        trial.changed = False
    workflow = trial.status.get("workflow")
    if trial.record.state == "pruned" and trial.phase in IN_PROGRESS and workflow:
        # Idempotent: a verdict written before a restart is carried out again until the run has ended.
        meta = trial.obj["metadata"]
        objects.stop_workflow(memo, meta["namespace"], workflow, STOPPED_BY_PRUNER)


def hold_budget(memo: kopf.Memo, trials: list[Trial], over: bool, sweep: dict[str, Any]) -> None:
    """Step 3: over budget, hold every trial in progress at its cost; within it, release the held ones."""
    for trial in trials:
        hold, body = trial.hold, objects.body_of(trial.obj)
        held = hold is not None and hold.get("held")
        resuming = hold is not None and not held and trial.phase == "OverBudget"
        if over and trial.state == "running" and not held and (trial.phase in IN_PROGRESS or resuming):
            cost = max(sweep_objects.trial_cost(trial.obj), NO_COST_YET)
            sweep_objects.patch_trial(memo, trial.obj, sweep_objects.hold_patch(trial.obj, cost))
            kopf.info(body, reason="SweepBudget", message="the sweep's budget is spent: stopping at a checkpoint")
        elif not over and held:
            sweep_objects.patch_trial(memo, trial.obj, sweep_objects.release_patch(trial.obj))
            kopf.info(body, reason="SweepBudget", message="the sweep's budget allows it again: resuming")
        elif hold is not None and not held and trial.phase != "OverBudget":
            sweep_objects.patch_trial(memo, trial.obj, sweep_objects.forget_patch())  # resumed (or ended)


def start_trials(
    memo: kopf.Memo, sweep: dict[str, Any], spec: SweepSpec, study: Any, trials: list[Trial], logger: Any
) -> list[Trial]:
    """Step 4: ask the study for new trials while fewer than `parallelism` are in progress; returns them."""
    meta = sweep["metadata"]
    in_progress = sum(1 for trial in trials if trial.state == "running")
    created: list[Trial] = []
    while len(study.trials) < spec.total_trials and in_progress < spec.parallelism:
        number, params, attrs = search.suggest(study, spec)
        record = search.TrialRecord(number, params, attrs=attrs)
        obj = sweep_objects.build_trial(meta["name"], meta["namespace"], spec, number, params, record)
        if not sweep_objects.create_trial(memo, obj, sweep, logger):
            break  # made before a restart, and not listed yet: the next pass sees it
        in_progress += 1
        created.append(Trial(obj, record))
        shown = ", ".join(f"{path}={value}" for path, value in params.items())
        kopf.info(objects.body_of(sweep), reason="TrialCreated", message=f"trial {obj['metadata']['name']}: {shown}")
    return created


def step_sweep(memo: kopf.Memo, namespace: str, name: str, logger: Any) -> None:
    """One pass over the sweep `namespace/name` (module docstring)."""
    sweep = sweep_objects.fresh_sweep(memo, namespace, name)
    if sweep is None or sweep["metadata"].get("deletionTimestamp"):
        return
    status = read_sweep_status(sweep.get("status"))
    if status.observed_generation != int(sweep["metadata"].get("generation") or 1) or status.phase == "Invalid":
        return  # this spec generation is not validated yet (or is invalid): the change handler's turn
    try:
        spec = SweepSpec.model_validate(sweep["spec"])
    except ValidationError:
        return
    trials = [Trial.of(obj) for obj in sweep_objects.list_trials(memo, sweep)]
    problems: list[str] = []
    for trial in trials:
        learn(memo, spec, trial, problems)
    study = search.rebuild(spec, name, [trial.for_search() for trial in trials])
    for trial in trials:
        prune(memo, spec, study, trial, sweep)
    cost = round(sum(sweep_objects.trial_cost(trial.obj) for trial in trials), 9)
    over = spec.budget.max_cost is not None and cost >= spec.budget.max_cost
    hold_budget(memo, trials, over, sweep)
    created = [] if over else start_trials(memo, sweep, spec, study, trials, logger)
    report(memo, sweep, spec, study, trials + created, cost, over, problems)


def _entry(spec: SweepSpec, trial: Trial) -> SweepTrial:
    record = trial.record
    last = record.values[max(record.values)] if record.values else None
    return SweepTrial(
        number=record.number,
        name=trial.name,
        parameters=record.params,
        state=STATE_NAMES[trial.state],  # type: ignore[arg-type]
        phase=trial.phase,  # type: ignore[arg-type]
        objective=record.value if trial.state == "complete" else last,
        epochs=max(record.values) if record.values else None,
        cost_usd=round(sweep_objects.trial_cost(trial.obj), 6),
        message=record.message or ("stopped by its own budget" if trial.state == "pruned" else None),
    )


def _phase_and_message(
    spec: SweepSpec, trials: list[Trial], best: Trial | None, cost: float, over: bool, problems: list[str]
) -> tuple[str, str]:
    done = sum(1 for trial in trials if trial.state in search.FINISHED)
    best_text = f"best {best.name}: {spec.objective.metric} {best.record.value:.5g}" if best else "no trial complete"
    if done >= spec.total_trials:
        if best is None:
            return "Failed", f"all {done} trials ended and none is complete (pruned or failed)"
        return "Succeeded", f"{done} trials done; {best_text}"
    budget = f"budget spent: {cost:.4f} of {spec.budget.max_cost:g} USD after {len(trials)} trials"
    holding = [t for t in trials if t.state == "running" and t.phase in HOLDING_A_MACHINE]
    if over and not holding:
        return "OverBudget", f"{budget}; {best_text}; raise budget.maxCost to go on"
    if over:
        return "Running", f"{budget}: stopping {len(holding)} trials at their checkpoints"
    if problems:
        return "Running", problems[0]
    if not trials:
        return "Pending", "starting the first trials"
    running = sum(1 for t in trials if t.state == "running")
    return "Running", f"{running} trials in progress, {done} of {spec.total_trials} done; {best_text}"


def report(
    memo: kopf.Memo,
    sweep: dict[str, Any],
    spec: SweepSpec,
    study: Any,
    trials: list[Trial],
    cost: float,
    over: bool,
    problems: list[str],
) -> None:
    """Step 5: write the status (guarded: a conflict leaves it to the next pass) and the events of what changed."""
    meta = sweep["metadata"]
    before = read_sweep_status(sweep.get("status"))
    number = search.best_number(study)
    best = next((trial for trial in trials if trial.record.number == number), None)
    phase, message = _phase_and_message(spec, trials, best, cost, over, problems)
    done = sum(1 for trial in trials if trial.state in search.FINISHED)
    fields: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "progress": f"{done}/{spec.total_trials}",
        "trials_done": done,
        "trials_total": spec.total_trials,
        "trials_running": sum(1 for trial in trials if trial.state == "running"),
        "best_trial": best.name if best else None,
        "best_objective": best.record.value if best else None,
        "best_parameters": best.record.params if best else None,
        "cost_usd": cost,
        "budget": spec.budget.max_cost,
        "trials": [_entry(spec, trial) for trial in trials],
    }
    try:
        sweep_objects.patch_sweep_status(
            memo, meta["namespace"], meta["name"], sweep_status_patch(**fields), meta["resourceVersion"]
        )
    except Conflict:
        return
    body = objects.body_of(sweep)
    if best is not None and best.name != before.best_trial:
        kopf.info(body, reason="Best", message=f"{best.name}: {spec.objective.metric} {best.record.value:.5g}")
    if phase != before.phase:
        kind = "Warning" if phase in ("Failed", "OverBudget") else "Normal"
        kopf.event(body, type=kind, reason=phase, message=message)
