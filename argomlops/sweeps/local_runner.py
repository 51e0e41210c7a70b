"""The laptop runner of `argomlops sweep`: trials as `argomlops train` processes, the study in a journal file.

Twice a second the runner

1. reads each running trial's `<run>/<stage>/metrics.jsonl`, reports the epochs it has not reported to
   the pruner (`study.report`) and stops a pruned trial with SIGTERM: the trainer checkpoints the step
   it is at and exits 143, as for a budget stop in the cluster;
2. ends the trials whose process exited: 0 → complete with its objective (`objective.final_value`),
   pruned → pruned, 2 or another failure → failed with its error line, 143 otherwise → still running
   (it was stopped by the budget or by Ctrl-C; the next run of the command resumes it);
3. once the spend reaches `budget.maxCost`, stops the running trials and starts no new one;
4. otherwise starts trials up to the parallelism: first those a previous run of the command left
   running (resumed with `--run-id`, from their checkpoints), then new ones (`study.suggest`).

Ctrl-C or SIGTERM stop the trials the same way (SIGTERM, checkpoint, 143), then the command exits 143:
run it again to continue. Each trainer runs in a session of its own, so a Ctrl-C on the terminal reaches
only the runner, which stops them cleanly; on Linux a trainer also gets SIGTERM if the runner dies.

The journal is Optuna's own (`JournalFileBackend`): a trial is created (asked) and given its run id
before its process starts, so no trial is lost or run twice whatever stops the command.

Cost: a laptop is not billed, so the runner counts what the trials would cost on the cluster, each
trial's seconds of training at the operator's prices (`ARGOMLOPS_PRICE_*`, defaults as in the chart)
for a node, plus `template.placement.gpus` GPUs; `budget.maxCost` means the same on both.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from argomlops.config import MLOpsSpec, error_lines
from argomlops.config.loading import apply_values
from argomlops.config.sweep import SweepSpec
from argomlops.errors import EXIT_PREEMPTED
from argomlops.runid import new_run_id
from argomlops.sweeps import study as search
from argomlops.sweeps.objective import ObjectiveMissing, epoch_values, final_value, metrics_file
from argomlops.sweeps.table import TrialRow, format_table, summary_line

POLL_SECONDS = 0.5
ORPHAN_WAIT_SECONDS = 120.0


@dataclass
class TrialProcess:
    """A trial's trainer process, as long as it runs."""

    number: int
    run_id: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float
    pruned_at: int | None = None
    stopping: bool = False

    def stop(self) -> None:
        """SIGTERM, once: a second one could reach the trainer while Python shuts down and kill it there."""
        if not self.stopping and self.process.poll() is None:
            self.stopping = True
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)


def _die_with_parent() -> None:
    """In the child (Linux): SIGTERM when the runner dies, so a crashed sweep leaves no trainer behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _price_per_second(spec: SweepSpec) -> float:
    """USD a trial's second costs on the cluster: its node, plus its GPUs."""
    from argomlops.operator.settings import load_settings

    prices = load_settings().prices()
    return (prices.node_hour + spec.template.placement.gpus * prices.gpu_hour) / 3600.0


def _error_line(log_path: Path) -> str | None:
    """The last `error:` line of a trial's log (what `argomlops train` says of bad input)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    found = [line for line in lines if line.startswith("error:")]
    return found[-1][len("error:") :].strip() if found else None


class LocalSweep:
    """One run of `argomlops sweep`: continues the sweep's study until it is done, stopped or out of budget."""

    def __init__(self, name: str, spec: SweepSpec, folder: Path) -> None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        self.name, self.spec, self.folder = name, spec, folder
        self.root = Path(spec.template.artifacts)
        for sub in ("trials", "logs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.study = search.new_study(spec, name, JournalStorage(JournalFileBackend(str(folder / "study.journal"))))
        self.running: dict[int, TrialProcess] = {}
        self.price = _price_per_second(spec)
        self.signalled: int | None = None
        self.budget_stop = False

    # -- the loop ---------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until done; returns 0, or 143 when a signal stopped it (run the command again to continue)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        spec = self.spec
        self._say(
            f"sweep {self.name}: {spec.total_trials} trials, {spec.parallelism} at a time, {spec.sampler} sampler, "
            f"{spec.pruner.type} pruner, objective {spec.objective.metric} ({spec.objective.direction}); "
            f"study {self.folder / 'study.journal'}"
        )
        try:
            while self._step():
                time.sleep(POLL_SECONDS)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._print_table()
        if self.signalled is not None:
            self._say(f"stopped by signal {self.signalled}: run the same command again to continue")
            return EXIT_PREEMPTED
        if self._over_budget() and self._open_trials():
            self._say(f"budget spent ({self._cost():.4f} of {spec.budget.max_cost:g}): raise budget.maxCost to go on")
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signalled is not None:  # a second Ctrl-C: do not wait for the checkpoints
            for trial in self.running.values():
                trial.process.kill()
        self.signalled = signum

    def _step(self) -> bool:
        """One pass of the loop (module docstring); False once nothing runs and nothing is to start."""
        for trial in list(self.running.values()):
            self._watch(trial)
        stopping = self.signalled is not None or self._over_budget()
        if stopping:
            self._stop_all()
        else:
            self._start_trials()
        return bool(self.running)

    def _start_trials(self) -> None:
        interrupted = [n for n in self._open_trials() if n not in self.running]
        while len(self.running) < self.spec.parallelism:
            if interrupted:
                self._start(interrupted.pop(0), resume=True)
            elif len(self.study.trials) < self.spec.total_trials:
                number, params, _attrs = search.suggest(self.study, self.spec)
                self._start(number, resume=False, params=params)
            else:
                return

    def _stop_all(self) -> None:
        if not self.budget_stop and self.signalled is None:
            self._say(f"budget spent ({self._cost():.4f} of {self.spec.budget.max_cost:g}): stopping the trials")
        self.budget_stop = self.signalled is None
        for trial in self.running.values():
            trial.stop()

    # -- one trial --------------------------------------------------------------------------------------

    def _frozen(self, number: int) -> Any:
        return self.study.trials[number]

    def _start(self, number: int, *, resume: bool, params: dict[str, Any] | None = None) -> None:
        study_trial = self._frozen(number)
        params = params if params is not None else search.from_optuna(self.spec, study_trial.params)
        run_id = study_trial.user_attrs.get("run_id")
        if run_id is None:
            taken = {p.name for p in self.root.iterdir()} if self.root.exists() else set()
            run_id = new_run_id(taken=taken | {str(t.user_attrs.get("run_id")) for t in self.study.trials})
            # Recorded before the process starts: whatever stops the runner, the rerun finds this folder.
            self._set(number, "run_id", run_id)
        self._wait_for_orphan(study_trial)
        config = self.folder / "trials" / f"t{number:04d}.yaml"
        try:
            trial_spec = MLOpsSpec.model_validate(apply_values(self.spec.template_raw(), params))
        except ValidationError as exc:  # a value inside a range can break a rule its ends keep (imageSize 66)
            self._fail(number, f"an invalid trial: {error_lines(exc)[0]}")
            return
        config.write_text(trial_spec.run_config().to_yaml())
        log = (self.folder / "logs" / f"t{number:04d}.log").open("ab")
        command = [sys.executable, "-m", "argomlops.cli", "train", str(config), "--run-id", run_id]
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
        )
        self._set(number, "pid", process.pid)
        self.running[number] = TrialProcess(number, run_id, process, log, time.monotonic())
        shown = " ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in params.items())
        self._say(f"trial {number} {'resumed' if resume else 'started'}: run {run_id}, {shown}")

    def _set(self, number: int, key: str, value: Any) -> None:
        """Record `key` on a trial that is not finished (Optuna keeps user attributes in the journal)."""
        from optuna.trial import Trial

        Trial(self.study, self._frozen(number)._trial_id).set_user_attr(key, value)

    def _wait_for_orphan(self, study_trial: Any) -> None:
        """Stop a trainer an earlier runner left behind on this trial (it would write the same run folder)."""
        pid, run_id = study_trial.user_attrs.get("pid"), study_trial.user_attrs.get("run_id")
        if not pid or not run_id or not _is_trainer_of(int(pid), str(run_id)):
            return
        self._say(f"trial {study_trial.number}: its trainer {pid} still runs; stopping it at a checkpoint first")
        os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
        while time.monotonic() < deadline and _is_trainer_of(int(pid), str(run_id)):
            time.sleep(0.5)

    def _watch(self, trial: TrialProcess) -> None:
        """Report the trial's new epochs to the pruner; end it when its process has exited."""
        code = trial.process.poll()
        values = self._values(trial.run_id)
        if trial.pruned_at is None and not self._frozen(trial.number).state.is_finished():
            pruned = search.report(self.study, trial.number, values, self.spec.epochs)
            if pruned is not None and code is None:
                trial.pruned_at = pruned
                self._say(
                    f"trial {trial.number} pruned at epoch {pruned} ({self.spec.objective.key} {values[pruned]:.5g})"
                )
                trial.stop()
        if code is not None:
            self._end(trial, code)

    def _values(self, run_id: str) -> dict[int, float]:
        objective = self.spec.objective
        if not objective.per_epoch:
            return {}
        path = self.root / run_id / metrics_file(objective)
        try:
            return epoch_values(path.read_text(), objective.key)
        except OSError:
            return {}

    def _end(self, trial: TrialProcess, code: int) -> None:
        from optuna.trial import TrialState

        del self.running[trial.number]
        trial.log.close()
        seconds = float(self._frozen(trial.number).user_attrs.get("seconds", 0.0)) + time.monotonic() - trial.started
        self._set(trial.number, "seconds", round(seconds, 2))
        number = trial.number
        if trial.pruned_at is not None:
            self.study.tell(number, state=TrialState.PRUNED)
        elif code == 0:
            path = self.root / trial.run_id / metrics_file(self.spec.objective)
            text = path.read_text() if path.exists() else None
            try:
                value = final_value(self.spec.objective, text, self.spec.epochs)
            except ObjectiveMissing as exc:
                self._fail(number, str(exc))
            else:
                self.study.tell(number, value)
                self._say(f"trial {number} complete: {self.spec.objective.metric} {value:.5g}")
        elif code == EXIT_PREEMPTED or trial.stopping:
            # Stopped by the runner (budget, Ctrl-C; killed by a second Ctrl-C, or by SIGTERM as Python shut down):
            # latest.json names its newest complete checkpoint, and the next run of the command resumes it.
            self._say(f"trial {number} stopped at a checkpoint; it resumes when the sweep goes on")
            return
        else:
            log = self.folder / "logs" / f"t{number:04d}.log"
            self._fail(number, _error_line(log) or f"argomlops train exited {code}; see {log}")
        self._print_table()

    def _fail(self, number: int, message: str) -> None:
        from optuna.trial import TrialState

        self._set(number, "message", message)
        self.study.tell(number, state=TrialState.FAIL)
        self._say(f"trial {number} failed: {message}")

    # -- what it shows ----------------------------------------------------------------------------------

    def _open_trials(self) -> list[int]:
        return [t.number for t in self.study.trials if not t.state.is_finished()]

    def _cost(self) -> float:
        seconds = sum(float(t.user_attrs.get("seconds", 0.0)) for t in self.study.trials)
        seconds += sum(time.monotonic() - trial.started for trial in self.running.values())
        return seconds * self.price

    def _over_budget(self) -> bool:
        budget = self.spec.budget.max_cost
        return budget is not None and self._cost() >= budget

    def rows(self) -> list[TrialRow]:
        """The table's rows, from the study."""
        states = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
        rows = []
        for frozen in self.study.trials:
            values = frozen.intermediate_values
            state = states.get(frozen.state.name, "running" if frozen.number in self.running else "stopped")
            pruned = f"pruned at epoch {max(values)}" if state == "pruned" and values else None
            rows.append(
                TrialRow(
                    number=frozen.number,
                    state=state,
                    params=search.from_optuna(self.spec, frozen.params),
                    objective=frozen.value,
                    last_value=values[max(values)] if values else None,
                    epochs=max(values) if values else None,
                    cost=float(frozen.user_attrs.get("seconds", 0.0)) * self.price,
                    run=frozen.user_attrs.get("run_id"),
                    note=frozen.user_attrs.get("message") or pruned,
                )
            )
        return rows

    def _print_table(self) -> None:
        rows, best = self.rows(), search.best_number(self.study)
        self._say("\n".join([*format_table(self.spec, rows, best), summary_line(self.spec, rows, best, self._cost())]))

    @staticmethod
    def _say(text: str) -> None:
        print(text, flush=True)


def _is_trainer_of(pid: int, run_id: str) -> bool:
    """Whether process `pid` lives and is an `argomlops train` of this run (ps works on Linux and macOS)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    found = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return "train" in found.stdout and run_id in found.stdout
