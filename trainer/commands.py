"""`argomlops train`: the trainer's command-line entry point.

`train_command` opens (or resumes) the run directory, installs the SIGTERM handler and runs the
stages in order (`vqvae_stage.run_vqvae_stage`, `prior_stage.run_prior_stage`), each imported when
needed, so importing this module (the CLI does) loads no TensorFlow.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from argomlops.config import ConfigError, RunConfig, error_lines
from argomlops.errors import EXIT_INVALID, EXIT_PREEMPTED, InputError, Preempted
from argomlops.trainer.logs import log, quiet_tensorflow

if TYPE_CHECKING:
    from argomlops.trainer.run import Run

quiet_tensorflow()


def _stages(config: RunConfig, chosen: list[str] | None) -> list[str]:
    if not chosen or "all" in chosen:
        return list(config.stages)
    # The config's order wins over the order of --stage flags; stages run vqvae before pixelcnn.
    return [s for s in ("vqvae", "pixelcnn") if s in chosen]


def _with_artifacts(config: RunConfig, artifacts: str | None) -> RunConfig:
    from pydantic import ValidationError

    if not artifacts:
        return config
    raw = config.model_dump(mode="json", by_alias=True)
    raw["artifacts"] = artifacts
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:  # a bad --artifacts is bad input like any field: one line, exit 2
        raise ConfigError([line.replace("artifacts:", "--artifacts:", 1) for line in error_lines(exc)]) from None


def _run_stage(run: Run, stage: str) -> None:
    if stage == "vqvae":
        from argomlops.trainer.vqvae_stage import run_vqvae_stage

        result = run_vqvae_stage(run)
    else:
        from argomlops.trainer.prior_stage import run_prior_stage

        result = run_prior_stage(run)
    figures = ", ".join(f"{k}={v:.4g}" for k, v in result.last.items() if isinstance(v, float))
    log(f"{stage}: {result.epochs} epochs, {result.steps} steps; last {figures}")


def _record_end(run: Run, code: int, exc: BaseException | None = None) -> bool:
    """Write how the attempt ended into provenance.json; returns whether it could (never raises)."""
    line = f"{type(exc).__name__}: {exc}".splitlines()[0][:500] if exc is not None else None
    try:
        run.record_exit(code, line)
    except Exception as write_error:  # the store may be what failed: the exit code must stay the original
        log(f"run {run.run_id}: could not record exit {code} in provenance.json: {write_error}")
        return False
    return True


def _record_failure(run: Run, code: int, exc: BaseException) -> None:
    """Write the failure's exit code and error line into provenance.json (`argomlops runs`: "failed") and the page."""
    if _record_end(run, code, exc):
        # The page then says "failed" and why (after a SIGTERM there is no time for it: report_schedule.py).
        run.page.write(run.store)


def train_command(config: RunConfig, args: argparse.Namespace) -> int:
    """Train the run's stages; returns 0, or raises InputError (exit 2) / Preempted (exit 143).

    How the attempt ended goes into provenance.json's `last_exit` (0, 143, or the code and error line of
    a failure), so `argomlops runs` can tell a stopped run from a failed one by its small files alone.
    """
    import keras

    from argomlops.trainer.replicas import training_strategy
    from argomlops.trainer.run import open_run, utc_now
    from argomlops.trainer.stage import install_sigterm_handler

    # Chosen before anything runs on a device: a test's logical CPU devices can only be made then.
    replicas = int(training_strategy().num_replicas_in_sync)
    config = _with_artifacts(config, getattr(args, "artifacts", None))
    run = open_run(config, run_id=getattr(args, "run_id", None))
    # Installed before the (slow) data and model set-up, so an early SIGTERM is not lost either.
    install_sigterm_handler(run.stop)
    run.provenance["replicas"] = replicas  # written with the stage's first record
    config = run.config  # a resumed run keeps its stored config
    if config.training.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(config.training.seed)
    stages = _stages(config, getattr(args, "stages", None))
    run.last_stage = stages[-1] if stages else None
    on = f"; {replicas} replicas (MirroredStrategy)" if replicas > 1 else ""
    log(f"run {run.run_id}: stages {', '.join(stages)}; artifacts {run.uri}{on}")
    try:
        for stage in stages:
            _run_stage(run, stage)
        run.write_provenance(ended=utc_now())
        run.record_exit(0)
        # Once more with the end time and the exit: the page written at the stage's end could not know them.
        run.page.write(run.store)
    except Preempted:
        _record_end(run, EXIT_PREEMPTED)  # a failed write must not turn the retried 143 into a failure
        raise
    except InputError as exc:
        # Bad input found before anything was trained: leave no half-made run directory behind.
        if not run.resumed and not run.latest:
            run.store.delete_tree("")
            log(f"run {run.run_id}: nothing trained; removed {run.uri}")
        else:
            _record_failure(run, EXIT_INVALID, exc)
        raise
    except BaseException as exc:
        _record_failure(run, 130 if isinstance(exc, KeyboardInterrupt) else 1, exc)
        raise
    finally:
        # However the process ends, the pod's report holds every request it made.
        run.write_pod_report()
    log(f"run {run.run_id}: done; artifacts in {run.uri}")
    return 0
