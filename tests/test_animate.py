"""`argomlops animate` end to end on a tiny trained run: both walks, every format, determinism, bad input.

One run (32 px images of `builtin:demo`, an 8x8 grid of codes, K = 16, a conditional prior) is trained
once per module by a real `argomlops train` process; the tests read it and never change it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from argomlops.cli import main

# Every test reads the run the module fixture trains (about 20 s on 2 cores).
pytestmark = pytest.mark.slow

RUN_ID = "2026-12-01_12h00m00s"
SIZE = 32
FACTOR = 8  # the smallest whole factor that makes 32 px at least 256 px
CONFIG = {
    "stages": ["vqvae", "pixelcnn"],
    "data": {"source": "builtin:demo", "imageSize": SIZE},
    "models": {
        "vqvae": {
            "encoderChannels": [8, 8],
            "residualBlocks": 0,
            "residualChannels": 8,
            "embeddingDim": 4,
            "numEmbeddings": 16,
        },
        "pixelcnn": {"filters": 8, "layers": 2, "embeddingDim": 4, "conditionOnTags": ["animal", "person"]},
    },
    "training": {
        "vqvae": {"epochs": 1, "batchSize": 16, "stepsPerEpoch": 30},
        "pixelcnn": {"epochs": 1, "batchSize": 8, "stepsPerEpoch": 20, "sampleCount": 4},
    },
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, demo image folder) of a finished tiny run with both stages."""
    root = tmp_path_factory.mktemp("animate-run")
    (root / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "ARGOMLOPS_CACHE": str(root / "cache"), "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "argomlops.cli", "train", str(root / "run.yaml"), "--run-id", RUN_ID]
    done = subprocess.run(
        [*command, "--artifacts", str(root / "runs")], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    images = next((root / "cache").rglob("metadata.jsonl")).parent
    return root / "runs" / RUN_ID, images


def _through(images: Path, *names: str) -> list[str]:
    return [str(images / f"{name}.png") for name in names]


def _timeline(path: Path, fps: float) -> np.ndarray:
    """Every frame of an animated WebP or GIF as shown over time: (N, H, W, 3) uint8.

    Both formats store a run of identical frames once, with the summed duration; each stored frame
    is repeated for as many frame periods as it lasts.
    """
    frames = []
    with Image.open(path) as image:
        for index in range(image.n_frames):
            image.seek(index)
            image.load()
            repeats = round(image.info["duration"] * fps / 1000)
            frames += [np.asarray(image.convert("RGB"))] * repeats
    return np.stack(frames)


def _mp4_frames(path: Path) -> np.ndarray:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        # Not list(reader): the reader's len() is inf for a stream (the count is not in the header).
        return np.stack(list(reader.iter_data()))


def _reconstructions(run_dir: Path, paths: list[str]) -> np.ndarray:
    """The run's VQ-VAE reconstructions of `paths`, as uint8 frames enlarged as animate enlarges them."""
    from argomlops.trainer.codes import load_vqvae
    from argomlops.trainer.pipeline import load_images
    from argomlops.trainer.storage import open_store
    from argomlops.trainer.vqvae import decode_indices, encode_indices

    vqvae = load_vqvae(open_store(str(run_dir)))
    images = decode_indices(vqvae, encode_indices(vqvae, load_images(paths, SIZE)))
    enlarged = images.repeat(FACTOR, axis=1).repeat(FACTOR, axis=2)
    return (enlarged * 255.0 + 0.5).astype(np.uint8)


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float32) - b.astype(np.float32))))


def _animate(run_dir: Path | str, out: Path | str, *extra: str) -> int:
    code: int = main(["animate", "--run", str(run_dir), "--out", str(out), *extra])
    return code


def test_latent_walk_starts_and_ends_on_the_reconstructions_and_moves_in_small_steps(
    run: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir, images = run
    through = _through(images, "astronaut-005", "coffee-012", "chelsea-030")
    out = tmp_path / "walk.webp"
    assert _animate(run_dir, out, "--through", *through, "--frames", "25", "--fps", "10") == 0
    frames = _timeline(out, 10)
    assert frames.shape == (25, SIZE * FACTOR, SIZE * FACTOR, 3)

    # Lossless WebP: the first, middle and last frames are the reconstructions of the three images.
    expected = _reconstructions(run_dir, through)
    for frame, reconstruction in zip(frames[[0, 12, 24]], expected, strict=True):
        assert np.abs(frame.astype(int) - reconstruction.astype(int)).max() <= 1
    # Smooth: every step is smaller than the jump between the two images of its half of the walk.
    for half, (start, end) in enumerate(((0, 12), (12, 24))):
        ends = _difference(frames[start], frames[end])
        steps = [_difference(frames[i], frames[i + 1]) for i in range(start, end)]
        assert max(steps) < ends / 2, (half, steps, ends)
        # Not a cross-fade: a blend would lie between its ends in every pixel; decoded codes do not.
        middle = frames[(start + end) // 2].astype(int)
        low = np.minimum(frames[start], frames[end]).astype(int)
        high = np.maximum(frames[start], frames[end]).astype(int)
        assert np.mean((middle < low - 8) | (middle > high + 8)) > 0.02


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_latent_walk_in_gif_and_mp4_has_every_frame_at_the_enlarged_size(
    run: tuple[Path, Path], tmp_path: Path, suffix: str
) -> None:
    run_dir, images = run
    out = tmp_path / f"walk{suffix}"
    through = _through(images, "rocket-001", "retina-002")
    assert _animate(run_dir, out, "--through", *through, "--frames", "6", "--fps", "10") == 0
    frames = _timeline(out, 10) if suffix == ".gif" else _mp4_frames(out)
    assert frames.shape == (6, SIZE * FACTOR, SIZE * FACTOR, 3)
    # Lossy formats (a 256-colour palette, H.264): near the reconstructions, not equal to them.
    expected = _reconstructions(run_dir, through)
    assert _difference(frames[0], expected[0]) < 6 and _difference(frames[-1], expected[1]) < 6


def test_prior_pan_shifts_the_codes_and_draws_only_the_entering_column(run: tuple[Path, Path]) -> None:
    import argomlops.trainer.pixelcnn  # noqa: F401
    from argomlops.trainer.animate import prior_pan
    from argomlops.trainer.checkpoint import load_keras
    from argomlops.trainer.sampler import Sampler
    from argomlops.trainer.storage import open_store

    sampler = Sampler(load_keras(open_store(str(run[0])), "pixelcnn/model.keras"))
    condition = np.array([[1.0, 0.0]], np.float32)
    codes = prior_pan(sampler, 12, seed=4, temperature=1.0, condition=condition)
    assert codes.shape == (12, 8, 8, 1)
    # Frame 0 is what `generate --seed 4` draws first; each next frame is the last one moved a column left.
    assert np.array_equal(codes[0], sampler.sample(1, seed=4, condition=condition)[0])
    assert all(np.array_equal(codes[t + 1, :, :-1], codes[t, :, 1:]) for t in range(11))
    # The entering columns are drawn, not copied: after 8 frames the picture is a new one.
    assert not np.array_equal(codes[8], codes[0])
    assert len({codes[t, :, -1].tobytes() for t in range(12)}) > 6


def _pixel_steps(frames: np.ndarray) -> list[float]:
    return [_difference(frames[i], frames[i + 1]) for i in range(len(frames) - 1)]


def test_prior_walk_is_the_same_file_for_a_seed_and_other_frames_for_another(
    run: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir, _ = run
    for name, seed in (("a", "3"), ("b", "3"), ("c", "5")):
        assert _animate(run_dir, tmp_path / f"{name}.webp", "--frames", "10", "--seed", seed, "--tags", "animal") == 0
    assert (tmp_path / "a.webp").read_bytes() == (tmp_path / "b.webp").read_bytes()
    a, c = _timeline(tmp_path / "a.webp", 12), _timeline(tmp_path / "c.webp", 12)
    assert a.shape == c.shape == (10, 256, 256, 3)
    assert all(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    # Moving, not flickering: consecutive frames share most of the picture (moved left by one code,
    # 4 px of the image): shifting back brings a frame much closer to the one before it.
    shift = 4 * FACTOR
    for t in range(9):
        moved = _difference(a[t + 1][:, :-shift], a[t][:, shift:])
        assert moved < _difference(a[t + 1], a[t]) / 2


def test_prior_walk_mp4_same_bytes_per_seed(run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, _ = run
    for name in ("a", "b"):
        assert _animate(run_dir, tmp_path / f"{name}.mp4", "--frames", "5", "--fps", "8", "--seed", "1") == 0
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert _mp4_frames(tmp_path / "a.mp4").shape == (5, 256, 256, 3)


def _without(run_dir: Path, tmp_path: Path, missing: str) -> Path:
    copy = tmp_path / "partial-run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "codes"))
    (copy / missing).unlink()
    return copy


BAD: list[tuple[str, list[str], str]] = [
    ("few", ["--through", "{a}"], "--through: give two or more images"),
    ("unreadable", ["--through", "{a}", "{text}"], "is not a readable image"),
    ("missing", ["--through", "{a}", "{nothing}"], "no such file"),
    ("extension", ["--out", "{tmp}/walk.avi"], "unknown video format '.avi'"),
    ("frames", ["--frames", "1"], "--frames: must be 2.."),
    ("fps", ["--fps", "0"], "--fps: must be > 0"),
    ("negative fps", ["--fps", "-3"], "--fps: must be > 0"),
    ("gif fps", ["--out", "{tmp}/walk.gif", "--fps", "60"], "--fps: a .gif plays at most 50"),
    ("temperature", ["--temperature", "0"], "--temperature: must be > 0"),
    ("unknown tag", ["--tags", "robot"], "['robot'] not among the tags"),
    ("tags and images", ["--through", "{a}", "{a}", "--tags", "animal"], "--tags: conditions the prior walk only"),
]


@pytest.mark.parametrize(("case", "extra", "message"), BAD, ids=[case for case, _, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(
    run: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    extra: list[str],
    message: str,
) -> None:
    run_dir, images = run
    (tmp_path / "text.png").write_text("not an image")
    names: dict[str, Any] = {
        "a": images / "astronaut-001.png",
        "text": tmp_path / "text.png",
        "nothing": tmp_path / "nothing.png",
        "tmp": tmp_path,
    }
    args = ["animate", "--run", str(run_dir), "--out", str(tmp_path / "walk.webp")]
    assert main(args + [arg.format(**names) for arg in extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not any(tmp_path.glob("walk.*"))


@pytest.mark.parametrize(
    ("missing", "extra", "message"),
    [
        ("pixelcnn/model.keras", [], "the run has no trained PixelCNN prior"),
        ("vqvae/model.keras", ["--through", "{a}", "{b}"], "the run has no trained VQ-VAE"),
    ],
)
def test_a_run_without_the_model_a_walk_needs_is_exit_2(
    run: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    missing: str,
    extra: list[str],
    message: str,
) -> None:
    run_dir, images = run
    partial = _without(run_dir, tmp_path, missing)
    through = {"a": images / "chelsea-001.png", "b": images / "coffee-001.png"}
    args = ["animate", "--run", str(partial), "--out", str(tmp_path / "walk.gif")]
    assert main(args + [arg.format(**through) for arg in extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and missing in lines[0], lines
    assert not (tmp_path / "walk.gif").exists()


def test_a_gs_run_walks_through_gs_images_into_a_gs_file(
    run: tuple[Path, Path], gcs_bucket: str, tmp_path: Path
) -> None:
    from argomlops.trainer.storage import open_store

    run_dir, images = run
    bucket = open_store(f"gs://{gcs_bucket}")
    for rel in ("run.yaml", "vqvae/model.keras", "pixelcnn/model.keras"):
        bucket.upload_file(run_dir / rel, f"runs/{RUN_ID}/{rel}")
    names = ["motorcycle-003", "hubble_deep_field-004"]
    for name in names:
        bucket.upload_file(images / f"{name}.png", f"images/{name}.png")
    through = [f"gs://{gcs_bucket}/images/{name}.png" for name in names]
    gs_run = f"gs://{gcs_bucket}/runs/{RUN_ID}"
    assert _animate(gs_run, f"gs://{gcs_bucket}/videos/walk.gif", "--through", *through, "--frames", "4") == 0
    assert _animate(gs_run, f"gs://{gcs_bucket}/videos/pan.webp", "--frames", "3") == 0
    for name, count in (("walk.gif", 4), ("pan.webp", 3)):
        (tmp_path / name).write_bytes(bucket.read_bytes(f"videos/{name}"))
        assert _timeline(tmp_path / name, 12).shape == (count, 256, 256, 3)
    # The same walk from the local files is the same file.
    assert _animate(run_dir, tmp_path / "local.gif", "--through", *_through(images, *names), "--frames", "4") == 0
    assert (tmp_path / "local.gif").read_bytes() == (tmp_path / "walk.gif").read_bytes()
