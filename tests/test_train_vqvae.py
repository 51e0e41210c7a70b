"""`argomlops train` in this process on the built-in demo data: the run directory, rerun, resume_from, bad input.

Everything is real: TensorFlow training on 16 px images, the local artifact store, the CLI entry point.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from argomlops.cli import main
from argomlops.config import RunConfig
from argomlops.runid import is_run_id

TINY: dict[str, Any] = {
    "stages": ["vqvae"],
    "data": {"source": "builtin:demo", "imageSize": 16},
    "models": {
        "vqvae": {
            "encoderChannels": [8, 16],
            "residualBlocks": 1,
            "residualChannels": 8,
            "embeddingDim": 4,
            "numEmbeddings": 16,
            "latentChannels": 8,
        }
    },
    "training": {"vqvae": {"epochs": 2, "batchSize": 8, "stepsPerEpoch": 6, "imagesEvery": 1, "learningRate": 0.002}},
}


def write_config(tmp_path: Path, **sections: Any) -> Path:
    """TINY with its artifacts under tmp_path and `sections` merged in, written as YAML."""
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["artifacts"] = str(tmp_path / "runs")
    for key, value in sections.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    path = tmp_path / f"run-{len(list(tmp_path.glob('run-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(autouse=True)
def restore_sigterm() -> Iterator[None]:
    """train installs a SIGTERM handler; give pytest's back afterwards."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "vqvae/metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_run_directory_layout_then_rerun_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ARGO_PROGRESS_FILE", str(tmp_path / "progress"))
    config = write_config(tmp_path, training={"vqvae": {**TINY["training"]["vqvae"], "epochs": 3}})
    assert main(["train", str(config)]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert is_run_id(run.name)

    # run.yaml is the resolved config; provenance has the figures of the stage.
    stored = RunConfig.model_validate(yaml.safe_load((run / "run.yaml").read_text()))
    assert stored.training.vqvae.epochs == 3 and stored.data.image_size == 16
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["run_id"] == run.name and provenance["parent"] is None and provenance["ended"]
    assert provenance["stages"]["vqvae"]["epochs"] == 3 and "val_psnr" in provenance["stages"]["vqvae"]["last"]
    assert (run / "code/argomlops/config/run.py").is_file() and (run / "code/argomlops/trainer/stage.py").is_file()

    # metrics.jsonl: one line per epoch with the per-step and validation figures.
    lines = metrics(run)
    assert [m["epoch"] for m in lines] == [1, 2, 3] and [m["step"] for m in lines] == [6, 12, 18]
    for key in ("train_mse", "train_vq_loss", "train_perplexity", "train_usage", "val_psnr", "img_per_s", "wall_s"):
        assert isinstance(lines[-1][key], float), key
    assert list((run / "vqvae/tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "progress").read_text() == "18/18"

    # Reconstruction grids: 8 pairs of 16 px images, scaled up, every epoch (imagesEvery: 1).
    pngs = sorted(p.name for p in (run / "vqvae/reconstructions").iterdir())
    assert pngs == ["epoch-0001.png", "epoch-0002.png", "epoch-0003.png"]
    with Image.open(run / "vqvae/reconstructions/epoch-0003.png") as grid:
        assert grid.mode == "RGB" and grid.width > 2 * grid.height

    # latest.json names the final checkpoint and says the stage is done; the oldest checkpoint was pruned.
    latest = json.loads((run / "latest.json").read_text())["stages"]["vqvae"]
    assert latest == {"checkpoint": "vqvae/checkpoints/step-00000018", "done": True}
    assert json.loads((run / latest["checkpoint"] / "state.json").read_text())["step"] == 18
    assert (run / "vqvae/model.keras").is_file()
    assert sorted(p.name for p in (run / "vqvae/checkpoints").iterdir()) == ["step-00000012", "step-00000018"]
    model = keras.models.load_model(run / "vqvae/model.keras")
    assert model.get_layer("quantizer").codes_per_position == 2

    # The same run again: nothing to do, the stored config wins over a changed one (and says so).
    capsys.readouterr()
    assert main(["train", str(config), "--run-id", run.name, "--set", "training.vqvae.epochs=5"]) == 0
    out = capsys.readouterr().out
    assert "training.vqvae.epochs: stored 3, given 5" in out and "vqvae: already done" in out
    assert len(metrics(run)) == 3


@pytest.mark.slow
def test_resume_from_starts_at_the_parent_weights(tmp_path: Path) -> None:
    assert main(["train", str(write_config(tmp_path)), "--run-id", "2026-01-01_00h00m00s"]) == 0
    parent = tmp_path / "runs/2026-01-01_00h00m00s"
    # A child that barely trains (tiny learning rate) must start where the parent ended, far below a fresh start.
    child_config = write_config(
        tmp_path,
        resumeFrom=str(parent),
        training={"vqvae": {"epochs": 1, "batchSize": 8, "stepsPerEpoch": 1, "learningRate": 1e-7}},
    )
    assert main(["train", str(child_config), "--run-id", "2026-01-01_00h00m01s"]) == 0
    child = tmp_path / "runs/2026-01-01_00h00m01s"
    provenance = json.loads((child / "provenance.json").read_text())
    assert provenance["parent"] == str(parent)
    parent_model = keras.models.load_model(parent / "vqvae/model.keras")
    child_model = keras.models.load_model(child / "vqvae/model.keras")
    weights = parent_model.get_layer("decoder").get_weights()
    for a, b in zip(weights, child_model.get_layer("decoder").get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_resume_from_another_architecture_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(write_config(tmp_path)), "--run-id", "2026-01-01_00h00m00s"]) == 0
    parent = tmp_path / "runs/2026-01-01_00h00m00s"
    wider = dict(TINY["models"]["vqvae"], residualChannels=12)
    child_config = write_config(tmp_path, resumeFrom=str(parent), models={"vqvae": wider})
    assert main(["train", str(child_config), "--run-id", "2026-01-01_00h00m01s"]) == 2
    err = capsys.readouterr().err
    assert f"resumeFrom {parent}/vqvae/model.keras: another architecture" in err, err


def test_empty_selection_exits_2_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, data={"metadata": "metadata.jsonl", "includeTags": ["no-such-tag"]})
    assert main(["train", str(config), "--run-id", "2026-01-01_00h00m00s"]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "runs/2026-01-01_00h00m00s").exists()


def test_batch_larger_than_the_data_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, training={"vqvae": {"batchSize": 4000}})
    assert main(["train", str(config)]) == 2
    assert "training.vqvae.batchSize: 4000" in capsys.readouterr().err


def test_resume_from_a_folder_that_is_no_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, resumeFrom=str(tmp_path / "no-such-run"))
    assert main(["train", str(config), "--run-id", "2026-01-01_00h00m00s"]) == 2
    assert "resumeFrom:" in capsys.readouterr().err
    assert not (tmp_path / "runs/2026-01-01_00h00m00s").exists()
