"""The judge: its classifier on real images with known answers, and `argomlops evaluate` end to end.

The classifier tests train one judge on `builtin:demo` at 16 px (the eight photos as tags, half the
images held out) and score real images as if they were generated. The end-to-end tests train a tiny
run conditioned on `astronaut` and `chelsea` once per module, in a real `argomlops train` process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from argomlops.cli import main
from argomlops.config import RunConfig
from argomlops.trainer.demo_data import PHOTOS

PHOTO_TAGS = [name.removeprefix("stereo_") for name in PHOTOS]
RUN_ID = "2026-12-01_08h00m00s"
RUN_CONFIG: dict[str, Any] = {
    "stages": ["vqvae", "pixelcnn"],
    "data": {
        "source": "builtin:demo",
        "imageSize": 16,
        "includeTags": ["astronaut", "chelsea"],
        "validationFraction": 0.3,
    },
    "models": {
        "vqvae": {
            "encoderChannels": [8, 8],
            "residualBlocks": 0,
            "residualChannels": 8,
            "embeddingDim": 4,
            "numEmbeddings": 16,
        },
        "pixelcnn": {"filters": 8, "layers": 1, "embeddingDim": 4, "conditionOnTags": ["astronaut", "chelsea"]},
    },
    "training": {
        "vqvae": {"epochs": 1, "batchSize": 16, "stepsPerEpoch": 30, "learningRate": 0.003},
        "pixelcnn": {"epochs": 1, "batchSize": 8, "stepsPerEpoch": 40, "sampleCount": 4, "evaluateCount": 8},
    },
}


# --- the classifier on real images ------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_judge(demo_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Any]]:
    """(config, selection, judge) of a judge trained on the demo's eight photos at 16 px."""
    from argomlops.trainer.data import select_images
    from argomlops.trainer.judge import load_or_train_judge
    from argomlops.trainer.storage import open_store

    config = _photo_config()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARGOMLOPS_CACHE", str(demo_cache_dir))
        selection = select_images(config.data, log=lambda _: None)
        judge = load_or_train_judge(config, open_store(str(tmp_path_factory.mktemp("judge"))), selection)
        yield config, selection, judge


def _photo_config(**data: Any) -> RunConfig:
    return RunConfig.model_validate(
        {
            "data": {"source": "builtin:demo", "imageSize": 16, "validationFraction": 0.5, **data},
            "models": {"pixelcnn": {"conditionOnTags": PHOTO_TAGS}},
        }
    )


def _halves(selection: Any, tags: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two disjoint random halves of the validation images (downscaled), and the tags of the second."""
    from argomlops.trainer.codes import tag_vectors
    from argomlops.trainer.judge import load_small

    order = np.random.default_rng(0).permutation(len(selection.validation))
    first = [selection.validation[i] for i in sorted(order[: len(order) // 2])]
    second = [selection.validation[i] for i in sorted(order[len(order) // 2 :])]
    return load_small(first, 16), load_small(second, 16), tag_vectors(second, selection.tags, tags)


def test_the_judge_separates_the_demo_photos(demo_judge: tuple[Any, Any, Any]) -> None:
    _, selection, judge = demo_judge
    assert judge.tags == PHOTO_TAGS and judge.exclusive and not judge.reused
    ceiling = judge.meta["held_out_accuracy"]
    assert judge.meta["validation_images"] == len(selection.validation) > 100
    # Chance is 1/8; the ceiling is what generated images are held to.
    assert ceiling["mean"] > 0.75
    assert set(ceiling["per_tag"]) == set(PHOTO_TAGS)


def test_real_held_out_images_score_near_the_ceiling_and_the_floor(demo_judge: tuple[Any, Any, Any]) -> None:
    from argomlops.trainer.evaluate import measure

    _, selection, judge = demo_judge
    reference, held_out, tags = _halves(selection, judge.tags)
    result = measure(judge, held_out, tags, reference, seed=0)
    assert abs(result["accuracy"]["mean"] - judge.meta["held_out_accuracy"]["mean"]) < 0.1
    frechet = result["frechet"]
    assert frechet["sample_size"] == len(reference) // 2
    assert 0.5 < frechet["ratio"] < 2.0
    assert result["precision_recall"]["precision"] > 0.8 and result["precision_recall"]["recall"] > 0.8


def test_images_with_shuffled_tags_score_near_chance(demo_judge: tuple[Any, Any, Any]) -> None:
    from argomlops.trainer.evaluate import measure

    _, selection, judge = demo_judge
    reference, held_out, tags = _halves(selection, judge.tags)
    shuffled = tags[np.random.default_rng(1).permutation(len(tags))]
    result = measure(judge, held_out, shuffled, reference, seed=0)
    assert result["accuracy"]["mean"] < 1 / len(PHOTO_TAGS) + 0.1


def test_images_of_one_photo_are_far_from_the_real_mix(demo_judge: tuple[Any, Any, Any]) -> None:
    # Mode collapse: realistic images (high precision) of one kind only (low recall, FD far above the floor).
    from argomlops.trainer.evaluate import measure

    _, selection, judge = demo_judge
    reference, held_out, tags = _halves(selection, judge.tags)
    one = tags[:, judge.tags.index("hubble_deep_field")] > 0
    result = measure(judge, held_out[one], tags[one], reference, seed=0)
    # It fails the goal "FD no more than twice the floor" (11 images a side here: the floor itself is noisy).
    assert result["frechet"]["ratio"] > 2
    assert result["precision_recall"]["recall"] < 0.3 < 0.8 < result["precision_recall"]["precision"]


def test_the_judge_is_deterministic_and_cached_by_fingerprint(
    demo_judge: tuple[Any, Any, Any], argomlops_cache: Path, tmp_path: Path
) -> None:
    from argomlops.trainer.data import select_images
    from argomlops.trainer.judge import CLASSIFIER_META, CLASSIFIER_MODEL, load_or_train_judge, load_small
    from argomlops.trainer.storage import open_store

    config, selection, judge = demo_judge
    store = open_store(str(tmp_path / "run"))
    again = load_or_train_judge(config, store, selection)
    assert not again.reused and again.meta["fingerprint"] == judge.meta["fingerprint"]
    images = load_small(selection.validation[:20], 16)
    np.testing.assert_allclose(again.score(images, downscaled=True)[0], judge.score(images, downscaled=True)[0])
    assert again.meta["held_out_accuracy"] == judge.meta["held_out_accuracy"]
    assert store.exists(CLASSIFIER_MODEL) and store.read_json(CLASSIFIER_META)["tags"] == PHOTO_TAGS

    cached = load_or_train_judge(config, store, selection)
    assert cached.reused
    np.testing.assert_allclose(cached.score(images, downscaled=True)[1], again.score(images, downscaled=True)[1])
    # Another split is another training set: the cached judge does not fit it.
    other = _photo_config(validationFraction=0.4)
    assert not load_or_train_judge(other, store, select_images(other.data, log=lambda _: None)).reused


def test_which_tags_are_judged(argomlops_cache: Path, tmp_path: Path) -> None:
    from PIL import Image

    from argomlops.trainer.data import select_images
    from argomlops.trainer.judge import judged_tags

    config = _photo_config()
    assert judged_tags(config, select_images(config.data, log=lambda _: None))[0] == PHOTO_TAGS
    # Unconditional: the tags on a useful share. Every astronaut crop is also `person` (100%: says
    # nothing); about half are `flipped`.
    config = RunConfig.model_validate({"data": {"source": "builtin:demo", "includeTags": ["astronaut"]}})
    tags, rule = judged_tags(config, select_images(config.data, log=lambda _: None))
    assert tags == ["flipped"] and "95%" in rule
    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    config = RunConfig.model_validate({"data": {"source": str(tmp_path)}})
    assert judged_tags(config, select_images(config.data, log=lambda _: None))[0] == []


def test_without_tags_only_the_distances_are_measured(tmp_path: Path) -> None:
    from PIL import Image

    from argomlops.trainer.data import select_images
    from argomlops.trainer.evaluate import measure, one_hot_rows
    from argomlops.trainer.judge import load_or_train_judge, load_small
    from argomlops.trainer.storage import open_store

    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    config = RunConfig.model_validate({"data": {"source": str(tmp_path), "imageSize": 12, "validationFraction": 0.5}})
    selection = select_images(config.data, log=lambda _: None)
    judge = load_or_train_judge(config, open_store(str(tmp_path / "run")), selection)
    assert judge.tags == [] and judge.meta["trained"] is False and judge.meta["held_out_accuracy"] is None
    real = load_small(selection.validation, 12)
    result = measure(judge, load_small(selection.train, 12), one_hot_rows([], [], len(selection.train)), real, seed=0)
    assert result["accuracy"] is None and result["tag_shares"] is None
    assert result["frechet"]["floor"] > 0 and result["precision_recall"] is not None


def test_a_mixed_precision_run_gets_a_float32_judge() -> None:
    import keras

    from argomlops.trainer.judge import build_judge

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        judge, _ = build_judge(128, 2, seed=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert {layer.dtype_policy.name for layer in judge.get_layer("judge_body").layers} == {"float32"}
    out = judge(np.zeros((1, 128, 128, 3), np.float32))
    assert out["features"].shape == (1, 48) and out["probabilities"].shape == (1, 2)
    assert judge.get_layer("downscale").get_config()["height"] == 64


# --- argomlops evaluate end to end ------------------------------------------------------------


def _train(config: Path, artifacts: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARGOMLOPS_CACHE": str(cache), "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "argomlops.cli", "train", str(config), "--artifacts", str(artifacts)]
    return subprocess.run(
        [*command, "--run-id", RUN_ID, *extra], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def judged_run(demo_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(run folder, training output) of a tiny run trained (both stages, evaluated at the end) once."""
    root = tmp_path_factory.mktemp("judged-run")
    (root / "run.yaml").write_text(yaml.safe_dump(RUN_CONFIG))
    done = _train(root / "run.yaml", root / "runs", demo_cache_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "runs" / RUN_ID, done.stdout


@pytest.fixture
def run_copy(judged_run: tuple[Path, str], tmp_path: Path) -> Path:
    """A private copy of the judged run."""
    shutil.copytree(judged_run[0], tmp_path / "runs" / RUN_ID)
    return tmp_path / "runs" / RUN_ID


def _metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {k: evaluation[k] for k in ("accuracy", "ceiling", "frechet", "precision_recall", "bits_per_code")}


@pytest.mark.slow
def test_the_prior_stage_ends_with_its_verdict(judged_run: tuple[Path, str]) -> None:
    run, output = judged_run
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["generated_images"] == 16 and evaluation["settings"]["tags"] == ["astronaut", "chelsea"]
    assert set(evaluation["accuracy"]["per_tag"]) == {"astronaut", "chelsea"}
    assert evaluation["judge"]["reused"] is False and evaluation["judge"]["rule"] == "conditionOnTags of the prior"
    assert evaluation["reconstruction_psnr"] > 0 and evaluation["bits_per_code"] > 0
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["evaluation"]["generated_images"] == 16 and provenance["ended"]
    assert provenance["evaluation"]["frechet_floor"] == evaluation["frechet"]["floor"]
    assert (run / "evaluation" / "classifier.keras").stat().st_size > 0
    assert "evaluate: 16 images judged" in output


@pytest.mark.slow
def test_evaluate_writes_the_verdict_and_prints_one_table(
    run_copy: Path, argomlops_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = str(run_copy)
    assert main(["evaluate", "--run", uri, "--count", "6", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    table = out[out.index("evaluation of ") :].splitlines()
    assert table[1].split() == ["metric", "generated", "real", "note"]
    names = [line[:24].strip() for line in table[2:]]
    assert names == [
        "accuracy astronaut",
        "accuracy chelsea",
        "accuracy (mean)",
        "Frechet distance",
        "precision (k=3)",
        "recall (k=3)",
        "reconstruction PSNR (dB)",
        "prior bits/code",
    ]
    evaluation = json.loads((run_copy / "evaluation.json").read_text())
    assert evaluation["generated_images"] == 12 and evaluation["judge"]["reused"] is True
    assert f"{evaluation['frechet']['floor']:.3f}" in table[2 + names.index("Frechet distance")]
    provenance = json.loads((run_copy / "provenance.json").read_text())
    assert provenance["evaluation"]["generated_images"] == 12 and "pixelcnn" in provenance["stages"]

    # The same seed gives the same figures; another seed other images.
    assert main(["evaluate", "--run", uri, "--count", "6", "--seed", "3"]) == 0
    assert _metrics(json.loads((run_copy / "evaluation.json").read_text())) == _metrics(evaluation)
    assert main(["evaluate", "--run", uri, "--count", "6", "--seed", "4", "--tags", "chelsea"]) == 0
    chelsea = json.loads((run_copy / "evaluation.json").read_text())
    assert chelsea["generated_images"] == 6 and list(chelsea["accuracy"]["per_tag"]) == ["chelsea"]
    assert chelsea["reference_images"] < evaluation["reference_images"]


@pytest.mark.slow
def test_a_done_stage_without_a_verdict_is_evaluated(run_copy: Path, demo_cache_dir: Path, tmp_path: Path) -> None:
    (run_copy / "evaluation.json").unlink()
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(RUN_CONFIG))
    done = _train(tmp_path / "run.yaml", run_copy.parent, demo_cache_dir, "--stage", "pixelcnn")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pixelcnn: already done" in done.stdout and "reusing the judge" in done.stdout
    assert json.loads((run_copy / "evaluation.json").read_text())["judge"]["reused"] is True


@pytest.mark.slow
def test_evaluate_bad_input_is_one_line_and_exit_2(
    run_copy: Path, argomlops_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_copy / "evaluation.json").unlink()
    uri = str(run_copy)
    cases = [
        (["--tags", "robot"], "--tags: ['robot'] not among the tags this prior knows"),
        (["--count", "0"], "--count: must be 1..4096, got 0"),
        (["--count", "5000"], "--count: must be 1..4096, got 5000"),
        (["--temperature", "0"], "--temperature: must be > 0"),
        (["--remove-prior"], "pixelcnn/model.keras not found: the run has no trained PixelCNN prior"),
    ]
    for extra, message in cases:
        if extra == ["--remove-prior"]:
            (run_copy / "pixelcnn" / "model.keras").unlink()
            extra = []
        assert main(["evaluate", "--run", uri, *extra]) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], errors
    assert not (run_copy / "evaluation.json").exists()


@pytest.mark.slow
def test_evaluate_a_run_in_gcs(run_copy: Path, argomlops_cache: Path, gcs_bucket: str) -> None:
    from argomlops.trainer.storage import open_store

    store = open_store(f"gs://{gcs_bucket}/runs/{RUN_ID}")
    (run_copy / "evaluation.json").unlink()
    store.upload_tree(run_copy, "")
    assert main(["evaluate", "--run", store.uri, "--count", "4"]) == 0
    evaluation = store.read_json("evaluation.json")
    assert evaluation["run"] == store.uri and evaluation["generated_images"] == 8
    assert evaluation["judge"]["reused"] is True  # the cached judge travelled with the run
    assert store.read_json("provenance.json")["evaluation"]["generated_images"] == 8


def test_the_stage_records_an_evaluation_that_cannot_run_and_goes_on(tmp_path: Path) -> None:
    from argomlops.errors import Preempted
    from argomlops.trainer.prior_stage import evaluate_prior
    from argomlops.trainer.run import Run
    from argomlops.trainer.stage import StageResult
    from argomlops.trainer.storage import open_store

    config = RunConfig.model_validate(RUN_CONFIG)
    run = Run(config=config, run_id=RUN_ID, store=open_store(str(tmp_path)))
    run.store.write_text("run.yaml", config.to_yaml())
    # No pixelcnn/model.keras: the judge cannot run, the stage still ends (exit 0), provenance says why.
    evaluate_prior(run, StageResult("pixelcnn", 1, 40))
    error = json.loads((tmp_path / "provenance.json").read_text())["evaluation"]["error"]
    assert "no trained PixelCNN prior" in error and not (tmp_path / "evaluation.json").exists()
    run.stop.set()
    with pytest.raises(Preempted, match="before the evaluation"):
        evaluate_prior(run, StageResult("pixelcnn", 1, 40))
    off = Run(config=config.model_copy(deep=True), run_id=RUN_ID, store=open_store(str(tmp_path / "off")))
    off.config.training.pixelcnn.evaluate_count = 0
    off.stop.set()
    evaluate_prior(off, StageResult("pixelcnn", 1, 40))  # evaluateCount 0: nothing to do, nothing raised
    assert not (tmp_path / "off").exists()
