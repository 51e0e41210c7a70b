"""Spot preemption for real: SIGTERM to a training process mid-epoch, exit 143, rerun, and it resumes.

Real processes (`python -m argomlops.cli train`), real TensorFlow training, real signals; artifacts on
the local disk, and once on gs:// through a real GCS emulator (only Google itself is replaced).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

STEPS = 300  # per epoch; the SIGTERM goes out after step 50 of epoch 2, far from the epoch's end
CONFIG: dict[str, Any] = {
    "stages": ["vqvae"],
    "data": {"source": "builtin:demo", "imageSize": 16},
    "models": {
        "vqvae": {"encoderChannels": [8], "residualBlocks": 0, "embeddingDim": 4, "numEmbeddings": 8},
    },
    "training": {"vqvae": {"epochs": 2, "batchSize": 4, "stepsPerEpoch": STEPS, "imagesEvery": 0}},
}
MID_EPOCH = re.compile(r"vqvae epoch 2 step 50/")
SIGTERM_LINE = re.compile(r"SIGTERM: checkpointing at epoch (\d+) \+ (\d+) steps, step (\d+)")


def _command(config: Path, run_id: str) -> list[str]:
    return [sys.executable, "-m", "argomlops.cli", "train", str(config), "--run-id", run_id]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def train_and_preempt(config: Path, run_id: str, env: dict[str, str]) -> tuple[int, float, str]:
    """Start training, SIGTERM it once it logs step 50 of epoch 2; returns (exit code, seconds to exit, log)."""
    process = subprocess.Popen(
        _command(config, run_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        lines.append(line)
        if MID_EPOCH.search(line):
            process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            break
        assert time.monotonic() < deadline, "no mid-epoch log line within 120 s"
    else:
        process.wait()
        pytest.fail("training ended before it was mid-epoch:\n" + "".join(lines))
    lines += process.stdout.readlines()
    code = process.wait(timeout=60)
    return code, time.monotonic() - sent, "".join(lines)


def train(config: Path, run_id: str, env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(
        _command(config, run_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300
    )
    return done.returncode, done.stdout


def adam_iterations(checkpoint: Path) -> int:
    """The optimizer's step counter as stored in a checkpoint folder."""
    names = json.loads((checkpoint / "state.json").read_text())["optimizer"]
    with np.load(checkpoint / "optimizer.npz") as arrays:
        return int(arrays[f"v{names.index('adam/iteration'):05d}"])


def write_config(tmp_path: Path, artifacts: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "artifacts": artifacts}))
    return path


@pytest.mark.slow
def test_sigterm_mid_epoch_checkpoints_exits_143_and_resumes_as_if_never_stopped(tmp_path: Path) -> None:
    config = write_config(tmp_path, str(tmp_path / "runs"))
    run = tmp_path / "runs/2026-11-27_09h01m09s"
    code, seconds, log = train_and_preempt(config, run.name, _env())
    assert code == 143, log
    assert seconds < 10, f"took {seconds:.1f} s to checkpoint and exit"

    # The checkpoint holds every step the process took: epoch 1 done plus the steps of epoch 2 so far.
    match = SIGTERM_LINE.search(log)
    assert match, log
    epochs_done, in_epoch, step = map(int, match.groups())
    assert epochs_done == 1 and 50 <= in_epoch < STEPS and step == STEPS + in_epoch
    # latest.json only names the checkpoint; where the stage stands is in the checkpoint's state alone.
    latest = json.loads((run / "latest.json").read_text())["stages"]["vqvae"]
    assert set(latest) == {"checkpoint", "done"} and not latest["done"]
    state = json.loads((run / latest["checkpoint"] / "state.json").read_text())
    assert (state["epoch"], state["step"], state["step_in_epoch"]) == (1, step, in_epoch)
    assert adam_iterations(run / latest["checkpoint"]) == step
    assert [json.loads(line)["epoch"] for line in (run / "vqvae/metrics.jsonl").read_text().splitlines()] == [1]

    # The same command again continues from there and finishes with exactly the uninterrupted step count.
    code, log = train(config, run.name, _env())
    assert code == 0, log
    assert f"resumed from vqvae/checkpoints/step-{step:08d}" in log
    records = [json.loads(line) for line in (run / "vqvae/metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in records] == [(1, STEPS), (2, 2 * STEPS)]
    assert records[1]["resumed_at_step"] == in_epoch
    latest = json.loads((run / "latest.json").read_text())["stages"]["vqvae"]
    state = json.loads((run / latest["checkpoint"] / "state.json").read_text())
    assert latest["done"] and state["step"] == 2 * STEPS
    assert adam_iterations(run / latest["checkpoint"]) == 2 * STEPS
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["attempts"] == 2 and provenance["stages"]["vqvae"]["epochs"] == 2
    # provenance.json copies the final checkpoint's figures.
    assert (
        provenance["stages"]["vqvae"]["last"] == state["last"] and provenance["stages"]["vqvae"]["steps"] == 2 * STEPS
    )

    # An uninterrupted run of the same config ends with the same weights: same batches, same order,
    # same optimizer and codebook state (bit-identical here; the tolerance only allows float reordering).
    code, log = train(config, "2026-11-27_09h01m10s", _env())
    assert code == 0, log
    whole = tmp_path / "runs/2026-11-27_09h01m10s" / latest["checkpoint"]
    with np.load(run / latest["checkpoint"] / "weights.npz") as resumed, np.load(whole / "weights.npz") as straight:
        for name in straight.files:
            np.testing.assert_allclose(resumed[name], straight[name], atol=1e-4, err_msg=name)


@pytest.mark.slow
def test_preempted_run_on_gcs_resumes(tmp_path: Path, gcs_bucket: str, gcs_emulator: str) -> None:
    from argomlops.trainer.storage import open_store

    uri = f"gs://{gcs_bucket}/artifacts"
    config = write_config(tmp_path, uri)
    env = _env(STORAGE_EMULATOR_HOST=gcs_emulator, GOOGLE_CLOUD_PROJECT="argomlops-test")
    run_id = "2026-11-27_09h01m09s"
    code, _, log = train_and_preempt(config, run_id, env)
    assert code == 143, log
    store = open_store(f"{uri}/{run_id}")
    latest = store.read_json("latest.json")["stages"]["vqvae"]
    assert store.read_json(f"{latest['checkpoint']}/state.json")["step_in_epoch"] >= 50 and not latest["done"]
    assert store.exists(f"{latest['checkpoint']}/weights.npz") and store.exists("run.yaml")

    code, log = train(config, run_id, env)
    assert code == 0, log
    assert "resumed from" in log
    final = store.read_json("latest.json")["stages"]["vqvae"]["checkpoint"]
    assert store.read_json(f"{final}/state.json")["step"] == 2 * STEPS
    assert store.exists("vqvae/model.keras") and store.exists("provenance.json")
    assert [r.split("/")[-1] for r in store.list("vqvae/tensorboard")]
    assert len({p.split("/")[2] for p in store.list("vqvae/checkpoints")}) <= 2
