"""`argomlops train`: the trainer's command-line entry point.

`train_command` opens (or resumes) the run directory, installs the SIGTERM handler and runs the
stages in order (`vqvae_stage.run_vqvae_stage`, `prior_stage.run_prior_stage`), each imported when
needed, so importing this module (the CLI does) loads no TensorFlow.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from argomlops.config import ConfigError, RunConfig, error_lines
from argomlops.errors import InputError
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


def train_command(config: RunConfig, args: argparse.Namespace) -> int:
    """Train the run's stages; returns 0, or raises InputError (exit 2) / Preempted (exit 143)."""
    import keras

    from argomlops.trainer.run import open_run, utc_now
    from argomlops.trainer.stage import install_sigterm_handler

    config = _with_artifacts(config, getattr(args, "artifacts", None))
    run = open_run(config, run_id=getattr(args, "run_id", None))
    # Installed before the (slow) data and model set-up, so an early SIGTERM is not lost either.
    install_sigterm_handler(run.stop)
    config = run.config  # a resumed run keeps its stored config
    if config.training.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(config.training.seed)
    stages = _stages(config, getattr(args, "stages", None))
    log(f"run {run.run_id}: stages {', '.join(stages)}; artifacts {run.uri}")
    try:
        for stage in stages:
            _run_stage(run, stage)
        run.write_provenance(ended=utc_now())
    except InputError:
        # Bad input found before anything was trained: leave no half-made run directory behind.
        if not run.resumed and not run.latest:
            run.store.delete_tree("")
            log(f"run {run.run_id}: nothing trained; removed {run.uri}")
        raise
    finally:
        # However the process ends, the pod's report holds every request it made.
        run.report()
    log(f"run {run.run_id}: done; artifacts in {run.uri}")
    return 0
