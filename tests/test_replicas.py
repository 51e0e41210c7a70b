"""Training on several replicas (MirroredStrategy) on two logical CPU devices, against one device.

The multi-replica path is what a pod with several GPUs takes; here `ARGOMLOPS_CPU_REPLICAS=2` splits
the CPU into two logical devices, which TensorFlow allows only before it initialises its devices, so
every run is a real `python -m argomlops.cli train` process. The same global batch on one device and
split over two replicas must give the same weights (EMA codebook and dead-code restarts included) and
metrics within float tolerance, and a checkpoint written on one replica count resumes on the other.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

STEPS = 120  # the vqvae's one epoch; a SIGTERM goes out after its step 50
CONFIG: dict[str, Any] = {
    "stages": ["vqvae", "pixelcnn"],
    "data": {"source": "builtin:demo", "imageSize": 16},
    "models": {
        "vqvae": {"encoderChannels": [8, 8], "residualBlocks": 0, "embeddingDim": 4, "numEmbeddings": 16},
        "pixelcnn": {"filters": 8, "layers": 1, "embeddingDim": 4, "conditionOnTags": ["animal", "person"]},
    },
    "training": {
        "vqvae": {"epochs": 1, "batchSize": 8, "stepsPerEpoch": STEPS, "imagesEvery": 0, "learningRate": 0.002},
        "pixelcnn": {"epochs": 1, "batchSize": 8, "stepsPerEpoch": 4, "sampleCount": 2, "evaluateCount": 0},
    },
}
RUN_ID = "2026-11-27_09h01m09s"
MID_EPOCH = "vqvae epoch 1 step 50/"


def _write_config(folder: Path, **training: Any) -> Path:
    config = json.loads(json.dumps(CONFIG))
    config["training"].update(training)
    config["artifacts"] = str(folder / "runs")
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _command(config: Path, *stages: str) -> list[str]:
    chosen = [arg for stage in stages for arg in ("--stage", stage)]
    return [sys.executable, "-m", "argomlops.cli", "train", str(config), "--run-id", RUN_ID, *chosen]


def _env(cache: Path, replicas: int) -> dict[str, str]:
    env = {**os.environ, "ARGOMLOPS_CACHE": str(cache), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("ARGOMLOPS_CPU_REPLICAS", None)
    if replicas > 1:
        env["ARGOMLOPS_CPU_REPLICAS"] = str(replicas)
    return env


def train(config: Path, cache: Path, replicas: int, *stages: str) -> str:
    """Run `argomlops train` to the end on `replicas` logical devices; returns its log."""
    done = subprocess.run(
        _command(config, *stages),
        env=_env(cache, replicas),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout
    return done.stdout


def train_and_preempt(config: Path, cache: Path, replicas: int) -> str:
    """Train the vqvae on `replicas` devices and SIGTERM it at step 50; returns its log (exit 143 asserted)."""
    process = subprocess.Popen(
        _command(config, "vqvae"),
        env=_env(cache, replicas),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 300
    for line in process.stdout:
        lines.append(line)
        if MID_EPOCH in line:
            process.send_signal(signal.SIGTERM)
            break
        assert time.monotonic() < deadline, "no mid-epoch log line within 300 s"
    lines += process.stdout.readlines()
    assert process.wait(timeout=120) == 143, "".join(lines)
    return "".join(lines)


def final_checkpoint(folder: Path, stage: str) -> Path:
    latest = json.loads((folder / "runs" / RUN_ID / "latest.json").read_text())["stages"][stage]
    return folder / "runs" / RUN_ID / latest["checkpoint"]


def arrays(checkpoint: Path, name: str) -> dict[str, np.ndarray]:
    """The variables of a checkpoint's `weights` or `optimizer` file, by their paths."""
    paths = json.loads((checkpoint / "state.json").read_text())[name]
    with np.load(checkpoint / f"{name}.npz") as data:
        return {path: np.asarray(data[f"v{i:05d}"]) for i, path in enumerate(paths)}


def assert_same_variables(ours: Path, theirs: Path, name: str = "weights", atol: float = 1e-4) -> None:
    mine, other = arrays(ours, name), arrays(theirs, name)
    assert list(mine) == list(other)
    for path, value in mine.items():
        np.testing.assert_allclose(value, other[path], rtol=1e-3, atol=atol, err_msg=f"{name} {path}")


def metrics(folder: Path, stage: str) -> dict[str, Any]:
    lines = (folder / "runs" / RUN_ID / stage / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replicas-cache")


@pytest.fixture(scope="module")
def one_device(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """The folder of both stages trained on one device, uninterrupted: what every other run must match."""
    folder = tmp_path_factory.mktemp("one-device")
    train(_write_config(folder), cache, 1)
    return folder


@pytest.mark.slow
def test_two_replicas_train_both_stages_as_one_device_does(one_device: Path, cache: Path, tmp_path: Path) -> None:
    log = train(_write_config(tmp_path), cache, 2)
    assert "2 replicas (MirroredStrategy)" in log
    assert "vqvae: training epochs 1..1, 120 steps each, batches of 8 split among 2 replicas" in log
    provenance = json.loads((tmp_path / "runs" / RUN_ID / "provenance.json").read_text())
    assert provenance["replicas"] == 2
    for stage in ("vqvae", "pixelcnn"):
        # Weights (the EMA codebook, its counts and restart counter among them) and Adam's moments.
        assert_same_variables(final_checkpoint(tmp_path, stage), final_checkpoint(one_device, stage))
        assert_same_variables(final_checkpoint(tmp_path, stage), final_checkpoint(one_device, stage), "optimizer")
        ours, theirs = metrics(tmp_path, stage), metrics(one_device, stage)
        # Global means: perplexity and usage too, which a mean of per-replica values would not give.
        for name, value in theirs.items():
            if name.startswith(("train_", "val_")):
                assert ours[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


@pytest.mark.slow
@pytest.mark.parametrize(("before", "after"), [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_on_another_replica_count(
    before: int, after: int, one_device: Path, cache: Path, tmp_path: Path
) -> None:
    config = _write_config(tmp_path)
    log = train_and_preempt(config, cache, before)
    stopped = final_checkpoint(tmp_path, "vqvae")
    state = json.loads((stopped / "state.json").read_text())
    # The SIGTERM checkpoint holds the step the loop had reached, optimizer counter included.
    assert 50 <= state["step"] < STEPS and f"step {state['step']}" in log
    assert int(arrays(stopped, "optimizer")["adam/iteration"]) == state["step"]

    log = train(config, cache, after, "vqvae")
    assert f"resumed from vqvae/checkpoints/step-{state['step']:08d}" in log
    assert ("split among 2 replicas" in log) == (after == 2)
    # The interrupted run, on two replica counts, ends where the uninterrupted one-device run did.
    assert_same_variables(final_checkpoint(tmp_path, "vqvae"), final_checkpoint(one_device, "vqvae"))


@pytest.mark.slow
def test_mixed_precision_trains_on_two_replicas_without_xla(cache: Path, tmp_path: Path) -> None:
    vqvae = {**CONFIG["training"]["vqvae"], "stepsPerEpoch": 4}
    config = _write_config(tmp_path, mixedPrecision=True, jitCompile=True, vqvae=vqvae)
    log = train(config, cache, 2, "vqvae")
    assert "vqvae: jitCompile is not used on 2 replicas" in log
    record = metrics(tmp_path, "vqvae")
    assert np.isfinite(record["train_loss"]) and np.isfinite(record["val_loss"])
    optimizer = arrays(final_checkpoint(tmp_path, "vqvae"), "optimizer")
    # Dynamic loss scaling ran (the fp16 path a T4 takes) and its state is in the checkpoint.
    assert any("scale" in path for path in optimizer), list(optimizer)
