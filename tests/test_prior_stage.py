"""The pixelcnn stage end to end: real `argomlops train` processes on the built-in demo images.

A tiny VQ-VAE (16 px images, a 4x4 grid of codes, K = 16) is trained once per module; each test works
on a copy of that run. SIGTERM is a real signal to a real training process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from argomlops.cli import main
from argomlops.config import RunConfig
from argomlops.errors import InputError

RUN_ID = "2026-11-27_07h00m00s"
CONFIG = {
    "stages": ["vqvae", "pixelcnn"],
    "data": {"source": "builtin:demo", "imageSize": 16},
    "models": {
        "vqvae": {
            "encoderChannels": [8, 8],
            "residualBlocks": 0,
            "residualChannels": 8,
            "embeddingDim": 4,
            "numEmbeddings": 16,
        },
        "pixelcnn": {"filters": 8, "layers": 1, "embeddingDim": 4, "conditionOnTags": ["animal", "person"]},
    },
    "training": {
        "vqvae": {"epochs": 1, "batchSize": 16, "stepsPerEpoch": 3},
        "pixelcnn": {"epochs": 3, "batchSize": 8, "stepsPerEpoch": 150, "sampleCount": 4, "evaluateCount": 0},
    },
}


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ARGOMLOPS_CACHE=str(cache), PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    return env


def _train(config: Path, artifacts: Path, cache: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "argomlops.cli", "train", str(config), "--artifacts", str(artifacts)]
    return subprocess.Popen(
        [*command, "--run-id", RUN_ID, *extra],
        env=_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def vqvae_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(artifacts folder, demo cache) of a run whose VQ-VAE stage is done and prior stage not started."""
    root = tmp_path_factory.mktemp("vqvae-run")
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    process = _train(config, root / "runs", root / "cache", "--stage", "vqvae")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return root / "runs", root / "cache"


@pytest.fixture
def run_copy(vqvae_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    """(run.yaml, artifacts, cache) with a private copy of the VQ-VAE run."""
    artifacts, cache = vqvae_run
    shutil.copytree(artifacts, tmp_path / "runs")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    return config, tmp_path / "runs", cache


def _wait_for(process: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """Read the process's output until a line contains `marker`; returns the lines read."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"no line with {marker!r} in:\n{''.join(lines)}")


@pytest.mark.slow
def test_prior_resumes_after_sigterm_and_generates(run_copy: tuple[Path, Path, Path], tmp_path: Path) -> None:
    config, artifacts, cache = run_copy
    run = artifacts / RUN_ID

    # 1. Stop the prior in its second epoch: exit 143 with a checkpoint that latest.json names.
    process = _train(config, artifacts, cache, "--stage", "pixelcnn")
    _wait_for(process, "pixelcnn epoch 2 step 50/150", timeout=240)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output
    latest = json.loads((run / "latest.json").read_text())["stages"]["pixelcnn"]
    state = json.loads((run / latest["checkpoint"] / "state.json").read_text())
    assert latest["done"] is False and state["epoch"] == 1 and state["step_in_epoch"] >= 50
    assert not (run / "pixelcnn" / "model.keras").exists()
    codes = np.load(run / "pixelcnn" / "codes" / "train.npz")
    assert codes["codes"].shape[1:] == (4, 4, 1) and codes["tags"].shape[1] == 2
    codes_written = (run / "pixelcnn" / "codes" / "train.npz").stat().st_mtime_ns

    # 2. The same command again resumes there, reuses the codes, and finishes.
    process = _train(config, artifacts, cache, "--stage", "pixelcnn")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert f"resumed from {latest['checkpoint']}" in output
    assert (run / "pixelcnn" / "codes" / "train.npz").stat().st_mtime_ns == codes_written
    records = [json.loads(line) for line in (run / "pixelcnn" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["step"] for r in records] == [150, 300, 450]
    last = records[-1]
    for key in ("train_bits_per_code", "val_bits_per_code", "train_accuracy", "val_accuracy"):
        assert key in last
    # Training helps: below the 4 bits/code of a uniform guess over K = 16.
    assert last["val_bits_per_code"] < 4.0
    assert (run / "pixelcnn" / "samples" / "epoch-0003.png").stat().st_size > 0
    assert any((run / "pixelcnn" / "tensorboard").iterdir())

    # 3. generate: deterministic for a seed, conditional on the prior's tags.
    uri = str(run)
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        assert main(["generate", "--run", uri, "--count", "3", "--out", str(tmp_path / name), "--seed", str(seed)]) == 0
    written = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert written == ["grid.png", "sample-0000.png", "sample-0001.png", "sample-0002.png"]
    assert (tmp_path / "a" / "grid.png").read_bytes() == (tmp_path / "b" / "grid.png").read_bytes()
    assert (tmp_path / "a" / "grid.png").read_bytes() != (tmp_path / "c" / "grid.png").read_bytes()
    out = str(tmp_path / "d")
    assert main(["generate", "--run", uri, "--count", "2", "--out", out, "--tags", "person"]) == 0
    assert main(["generate", "--run", uri, "--count", "2", "--out", out, "--tags", "robot"]) == 2


def test_prior_without_a_vqvae_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    process = _train(config, tmp_path / "runs", tmp_path / "cache", "--stage", "pixelcnn")
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no trained VQ-VAE" in errors[0] and "vqvae/model.keras" in errors[0]
    assert not (tmp_path / "runs" / RUN_ID / "pixelcnn" / "model.keras").exists()


def test_codes_outside_the_codebook_are_exit_2(run_copy: tuple[Path, Path, Path]) -> None:
    config, artifacts, cache = run_copy
    codes_dir = artifacts / RUN_ID / "pixelcnn" / "codes"
    codes_dir.mkdir(parents=True)
    np.savez(codes_dir / "train.npz", codes=np.full((20, 4, 4, 1), 16, np.int32), tags=np.zeros((20, 2), np.float32))
    np.savez(codes_dir / "validation.npz", codes=np.zeros((2, 4, 4, 1), np.int32), tags=np.zeros((2, 2), np.float32))
    (codes_dir / "codes.json").write_text(json.dumps({"tags": ["animal", "person"]}))
    process = _train(config, artifacts, cache, "--stage", "pixelcnn")
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "16..16" in errors[0] and "16 entries" in errors[0], output
    assert not (artifacts / RUN_ID / "pixelcnn" / "checkpoints").exists()


def test_a_run_without_its_own_vqvae_uses_and_keeps_the_parents(vqvae_run: tuple[Path, Path], tmp_path: Path) -> None:
    # The journal's second FAFA run: stages [pixelcnn] with resumeFrom an earlier run.
    from argomlops.trainer.codes import codebook_of, load_vqvae
    from argomlops.trainer.storage import open_store

    artifacts, _ = vqvae_run
    store, parent = open_store(str(tmp_path / "child")), open_store(str(artifacts / RUN_ID))
    assert codebook_of(load_vqvae(store, parent)) == (16, 1)
    assert (tmp_path / "child" / "vqvae" / "model.keras").read_bytes() == (
        artifacts / RUN_ID / "vqvae" / "model.keras"
    ).read_bytes()
    with pytest.raises(InputError, match="no trained VQ-VAE"):
        load_vqvae(open_store(str(tmp_path / "orphan")), open_store(str(tmp_path / "empty")))


def test_conditioning_on_tags_no_training_image_carries_is_input_error(
    vqvae_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from argomlops.trainer.codes import CODES_DIR, extract_codes, load_vqvae
    from argomlops.trainer.storage import open_store

    artifacts, cache = vqvae_run
    monkeypatch.setenv("ARGOMLOPS_CACHE", str(cache))
    config = RunConfig.model_validate(
        {**CONFIG, "models": {**CONFIG["models"], "pixelcnn": {"conditionOnTags": ["robot"]}}}
    )
    store = open_store(str(tmp_path / "child"))
    vqvae = load_vqvae(store, open_store(str(artifacts / RUN_ID)))
    with pytest.raises(InputError, match=r"conditionOnTags: no training image carries any of \['robot'\]"):
        extract_codes(config, store, vqvae)
    assert not store.exists(f"{CODES_DIR}/train.npz") and not store.exists(f"{CODES_DIR}/codes.json")


def test_codes_with_the_wrong_k_are_rejected() -> None:
    from argomlops.trainer.codes import check_codes

    with pytest.raises(InputError, match=r"shape \(4, 4, 2\).*k = 1"):
        check_codes(np.zeros((3, 4, 4, 2), np.int32), 16, 1, "codes")
    with pytest.raises(InputError, match="not integers"):
        check_codes(np.zeros((3, 4, 4, 1), np.float32), 16, 1, "codes")
    check_codes(np.full((3, 4, 4, 1), 15, np.int32), 16, 1, "codes")


def test_generate_bad_input_is_exit_2(tmp_path: Path) -> None:
    assert main(["generate", "--run", str(tmp_path / "nope"), "--count", "2", "--out", str(tmp_path / "o")]) == 2
    assert main(["generate", "--run", str(tmp_path), "--count", "0", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_config_used_here_is_valid() -> None:
    assert RunConfig.model_validate(CONFIG).models.vqvae.codes_per_position == 1
