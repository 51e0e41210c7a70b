"""Animations written as files: animated WebP and GIF through Pillow, MP4 through imageio's ffmpeg.

    write_video(frames, "walk.webp", fps=12)   # frames (N, S, S, 3) uint8; a local path or gs:// URI

The format follows the extension (`video_format`). Frames are enlarged by a whole factor (nearest
neighbour, so each generated pixel stays a crisp square) until a side is at least `MIN_SIDE` pixels.
The file is encoded into a temporary folder and then handed to the ArtifactStore, whose writes are
atomic: `--out` holds the old file or the whole new one, never part of one.

WebP is lossless (the frames are the model's output, exactly). GIF uses one palette for all frames,
without dithering: a palette per frame, or dither noise, would make still regions flicker. Both store a
run of identical frames once, with the summed duration (libwebp and Pillow do it): the timeline keeps
all N frames, `n_frames` may count fewer. MP4 (H.264, yuv420p) always holds every frame.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from argomlops.errors import InputError
from argomlops.trainer.storage import GS_SCHEME, open_store

FORMATS = (".webp", ".gif", ".mp4")
MIN_SIDE = 256
# GIF delays are whole hundredths of a second, and browsers slow delays under 0.02 s down to 0.1 s.
GIF_MAX_FPS = 50.0


def video_format(out: str, fps: float) -> str:
    """The format of `out` by its extension (".webp", ".gif" or ".mp4"); InputError for any other or a bad fps."""
    suffix = posixpath.splitext(out)[1].lower()
    if suffix not in FORMATS:
        raise InputError(f"--out: {out}: unknown video format {suffix or '(no extension)'!r}; use {', '.join(FORMATS)}")
    if not fps > 0:
        raise InputError(f"--fps: must be > 0, got {fps}")
    if suffix == ".gif" and fps > GIF_MAX_FPS:
        raise InputError(f"--fps: a .gif plays at most {GIF_MAX_FPS:g} frames per second, got {fps}")
    return suffix


def scale_factor(side: int, min_side: int = MIN_SIDE) -> int:
    """The smallest whole factor that makes `side` at least `min_side`."""
    return max(1, -(-min_side // max(1, side)))


def _enlarged(frames: np.ndarray, factor: int) -> Iterator[Image.Image]:
    for frame in frames:
        image = Image.fromarray(frame)
        yield image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def durations_ms(count: int, fps: float, unit: int = 1) -> list[int]:
    """Per-frame durations in milliseconds, multiples of `unit`, whose running sums stay on the true timeline."""
    ends = [round((i + 1) * 1000 / fps / unit) * unit for i in range(count)]
    return [end - start for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def _save_webp(frames: np.ndarray, factor: int, fps: float, path: Path) -> None:
    first, *rest = _enlarged(frames, factor)
    first.save(
        path,
        format="WEBP",
        save_all=True,
        append_images=rest,
        duration=durations_ms(len(frames), fps),
        loop=0,
        lossless=True,
        method=4,
    )


def _save_gif(frames: np.ndarray, factor: int, fps: float, path: Path) -> None:
    # One palette from all frames at their own size (the enlargement adds no colours).
    stacked = Image.fromarray(np.concatenate(list(frames), axis=0))
    palette = stacked.quantize(256, method=Image.Quantize.MEDIANCUT, kmeans=1)
    indexed = [
        Image.fromarray(frame)
        .quantize(palette=palette, dither=Image.Dither.NONE)
        .resize((frame.shape[1] * factor, frame.shape[0] * factor), Image.Resampling.NEAREST)
        for frame in frames
    ]
    indexed[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=indexed[1:],
        duration=durations_ms(len(frames), fps, 10),
        loop=0,
        optimize=False,
    )


def _save_mp4(frames: np.ndarray, factor: int, fps: float, path: Path) -> None:
    import imageio.v2 as imageio

    # yuv420p (what every player decodes) needs even sides; the images' sides are multiples of 2**n
    # already, so a block size of 2 never makes imageio resize. One thread and bitexact muxing: the same
    # frames give the same bytes on any machine (x264's threading depends on the core count).
    writer = imageio.get_writer(
        path,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        quality=8,
        macro_block_size=2,
        ffmpeg_log_level="error",
        output_params=["-threads", "1", "-fflags", "+bitexact"],
    )
    with writer:
        for image in _enlarged(frames, factor):
            writer.append_data(np.asarray(image))


_SAVERS = {".webp": _save_webp, ".gif": _save_gif, ".mp4": _save_mp4}


def encode_video(frames: np.ndarray, path: Path, fps: float, min_side: int = MIN_SIDE) -> None:
    """Write `frames` (N, S, S, 3) uint8 to the local file `path`, in the format of its extension, enlarged."""
    suffix = video_format(str(path), fps)
    factor = scale_factor(min(frames.shape[1:3]), min_side)
    _SAVERS[suffix](frames, factor, fps, path)


def _split(out: str) -> tuple[str, str]:
    """(parent store URI, file name) of a local path or gs:// URI naming a file."""
    if out.startswith(GS_SCHEME):
        parent, name = posixpath.split(out.rstrip("/"))
        return parent, name
    path = Path(out)
    return str(path.parent), path.name


def write_video(frames: np.ndarray, out: str, fps: float, min_side: int = MIN_SIDE) -> None:
    """Encode `frames` (N, S, S, 3) uint8 by the extension of `out` and store them there (local or gs://)."""
    suffix = video_format(out, fps)
    parent, name = _split(out)
    with tempfile.TemporaryDirectory(prefix="argomlops-video-") as temp:
        local = Path(temp) / f"animation{suffix}"
        encode_video(frames, local, fps, min_side)
        open_store(parent).upload_file(local, name)
