"""`argomlops sweep` end to end: real (tiny) trainer processes, a pruned trial, SIGTERM mid-trial and a resume.

The command runs as a subprocess, as a person runs it; each trial is `argomlops train` on the built-in
demo images at 16 px (a few steps per epoch). The sweep is a grid of three learning rates whose seed puts
the hopeless one (1e-6, it barely learns) last, after two complete trials: the median pruner stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube.fixtures import eventually

from argomlops.config.sweep import validate_sweep
from argomlops.sweeps import study as search

pytestmark = [pytest.mark.slow]

RATES = [0.003, 0.001, 1e-6]
EPOCHS = 12


def tiny_sweep(artifacts: Path) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {
            "artifacts": str(artifacts),
            "stages": ["vqvae"],
            "data": {"source": "builtin:demo", "imageSize": 16},
            "models": {"vqvae": {"encoderChannels": [8, 16], "residualBlocks": 1, "residualChannels": 8,
                                 "embeddingDim": 8, "numEmbeddings": 16}},
            "training": {"vqvae": {"epochs": EPOCHS, "batchSize": 8, "stepsPerEpoch": 10, "imagesEvery": 0}},
            "placement": {"gpus": 0},
        },
        "parameters": [{"path": "training.vqvae.learningRate", "choices": RATES}],
        "objective": {"metric": "vqvae.val_mse"},
        "trials": 3,
        "sampler": "grid",
        "pruner": {"type": "median", "startupTrials": 1, "warmupEpochs": 0},
    }  # fmt: skip
    spec["seed"] = next(seed for seed in range(100) if grid_order({**spec, "seed": seed})[2] == 1e-6)
    return {"apiVersion": "argomlops.dev/v1alpha1", "kind": "MLOpsSweep", "metadata": {"name": "tiny"}, "spec": spec}


def grid_order(raw: dict[str, Any]) -> list[float]:
    spec = validate_sweep(raw)
    study = search.rebuild(spec, "tiny", [])
    return [search.suggest(study, spec)[1]["training.vqvae.learningRate"] for _ in RATES]


def start(sweep_file: Path, cwd: Path, cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "ARGOMLOPS_CACHE": str(cache)}
    command = [sys.executable, "-m", "argomlops.cli", "sweep", str(sweep_file)]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def journal(folder: Path) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    return optuna.load_study(study_name="tiny", storage=storage)


def test_a_local_sweep_prunes_survives_sigterm_mid_trial_and_finishes_on_the_rerun(
    tmp_path: Path, argomlops_cache: Path
) -> None:
    runs = tmp_path / "runs"
    sweep_file = tmp_path / "tiny.yaml"
    sweep_file.write_text(yaml.safe_dump(tiny_sweep(runs)))
    folder = runs / "sweeps" / "tiny"

    # 1. SIGTERM while trial 1 trains: it checkpoints and exits 143, so does the command; trial 0 is kept.
    first = start(sweep_file, tmp_path, argomlops_cache)
    log = folder / "logs" / "t0001.log"
    eventually(lambda: log.exists() and "vqvae: training epochs" in log.read_text(), timeout=240)
    time.sleep(0.5)  # into the training steps
    first.send_signal(signal.SIGTERM)
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 143, output[-3000:]
    assert "trial 1 stopped at a checkpoint" in output and "run the same command again to continue" in output, output
    stopped = journal(folder)
    assert [t.state.name for t in stopped.trials] == ["COMPLETE", "RUNNING"]
    interrupted = stopped.trials[1].user_attrs["run_id"]
    assert "SIGTERM: checkpointing" in log.read_text()

    # 2. The rerun resumes trial 1 under its run id, from its checkpoint, then runs trial 2, which is pruned.
    second = start(sweep_file, tmp_path, argomlops_cache)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output[-3000:]
    assert f"trial 1 resumed: run {interrupted}" in output
    assert "resumed from vqvae/checkpoints/" in log.read_text()
    assert "trial 2 pruned at epoch" in output
    done = journal(folder)
    assert [t.state.name for t in done.trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert [t.params["training.vqvae.learningRate"] for t in done.trials] == grid_order(tiny_sweep(runs)["spec"])
    pruned = done.trials[2]
    assert max(pruned.intermediate_values) < EPOCHS

    # 3. No trial lost or repeated: three ordinary run folders, the interrupted one trained each step once.
    run_ids = [t.user_attrs["run_id"] for t in done.trials]
    assert sorted(p.name for p in runs.iterdir() if (p / "run.yaml").exists()) == sorted(run_ids)
    epochs = [line for line in (runs / interrupted / "vqvae" / "metrics.jsonl").read_text().splitlines() if line]
    assert len(epochs) == EPOCHS and '"epoch": 12' in epochs[-1]
    best = min(done.trials[:2], key=lambda t: t.value)
    table = output[output.rindex("trial  state") :]
    assert f"*{best.number}" in table and "pruned at epoch" in table
    assert "3/3 trials done (1 pruned); best trial" in table

    # 4. Run again: nothing left to do, the same table.
    third = start(sweep_file, tmp_path, argomlops_cache)
    output, _ = third.communicate(timeout=120)
    assert third.returncode == 0 and "started" not in output and "3/3 trials done (1 pruned)" in output
