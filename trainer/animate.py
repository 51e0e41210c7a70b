"""`argomlops animate`: an animation of a finished run, as animated WebP, GIF or MP4.

    argomlops animate --run runs/2026-11-27_09h01m09s --out walk.webp --through a.png b.png [c.png ...]
    argomlops animate --run runs/2026-11-27_09h01m09s --out pan.mp4 [--tags standing] [--seed 3]

With `--through`: a latent walk. The images are preprocessed as for training (padded to a square,
resized to the run's image size), encoded by the VQ-VAE's encoder, and the walk moves between the
encoder outputs of consecutive images with cosine easing (it slows to a stop on each image). Every
frame is quantized with the run's codebook and decoded, so each is an image the decoder can make,
not a blend of two pictures. The interpolation is linear in the encoder's output space: the codebook
partitions that space into nearest-code cells, and a straight segment crosses, in order, the cells
of codes lying between its ends. Spherical interpolation keeps norms constant, which suits Gaussian
latents whose mass sits on a shell; these outputs are not such latents (they are trained to sit near
codebook vectors of many norms). Measured on the demo run (12 random pairs of its images, 24 frames):
along the straight path the mean distance to the nearest code is 0.99x that at the ends (worst frame
1.25x), along slerp (per position or of the whole latent) 1.04x (1.27-1.28x), and the largest step
between frames is 12.6 % of the jump between the ends against 13.0-13.3 %. The straight midpoint is
10 % shorter than its ends and still nearer the codebook than slerp's: the norm slerp keeps is not
what this codebook is organised by.

Without `--through`: a pan through the prior. The first frame is the prior's sample for `--seed`
(the image `generate --seed` draws first); each next frame shifts the code grid one column to the
left and draws the entering column with the prior, conditioned on the codes kept (the sampler keeps
every code off its mask). A person sees the picture slide left while new content, continuing the
old, comes in from the right; after W frames (W = the code grid's width) none of the first picture
is left. The same run and arguments give the same bytes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from argomlops.errors import InputError
from argomlops.trainer.checkpoint import load_keras
from argomlops.trainer.codes import VQVAE_MODEL, load_vqvae
from argomlops.trainer.data import is_readable_image
from argomlops.trainer.generate import PRIOR_MODEL, _condition
from argomlops.trainer.logs import log
from argomlops.trainer.pipeline import load_images
from argomlops.trainer.sampler import Sampler
from argomlops.trainer.storage import GS_SCHEME, ArtifactStore, open_store
from argomlops.trainer.video import video_format, write_video
from argomlops.trainer.vqvae import decode_indices

MAX_FRAMES = 3600
DECODE_BATCH = 32


def walk_positions(frames: int, keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(segment, eased fraction) of each frame of a walk through `keys` points, first to last.

    Frame f sits at f/(frames-1) of the way; within a segment the fraction is eased by
    (1 - cos(pi u)) / 2, so the walk starts and stops on each point at zero speed. The first frame has
    fraction 0 of segment 0 and the last fraction 1 of the last segment, exactly.
    """
    t = np.linspace(0.0, keys - 1, frames)
    segment = np.minimum(np.floor(t).astype(np.int64), keys - 2)
    return segment, (1.0 - np.cos(np.pi * (t - segment))) / 2.0


def _decode(vqvae: keras.Model, codes: np.ndarray) -> np.ndarray:
    """Images (N, S, S, 3) in [0, 1] of (N, H, W, k) codes, decoded a batch at a time."""
    parts = [decode_indices(vqvae, codes[i : i + DECODE_BATCH]) for i in range(0, len(codes), DECODE_BATCH)]
    return np.concatenate(parts, axis=0)


def latent_walk(vqvae: keras.Model, images: np.ndarray, frames: int) -> np.ndarray:
    """`frames` images (frames, S, S, 3) in [0, 1]: a walk through the encodings of `images` (M >= 2).

    The first and last frames are the VQ-VAE's reconstructions of the first and last image.
    """
    encoder, quantizer = vqvae.get_layer("encoder"), vqvae.get_layer("quantizer")
    latents = np.asarray(encoder(tf.convert_to_tensor(images, tf.float32), training=False), np.float32)  # (M, h, w, kD)
    segment, eased = walk_positions(frames, len(images))
    u = eased.astype(np.float32)[:, None, None, None]
    parts = []
    for i in range(0, frames, DECODE_BATCH):
        at, s = slice(i, i + DECODE_BATCH), segment[i : i + DECODE_BATCH]
        # (1-u)a + ub, not a + u(b-a): exactly a at u = 0 and exactly b at u = 1.
        mixed = (1.0 - u[at]) * latents[s] + u[at] * latents[s + 1]  # (B, h, w, kD)
        codes = quantizer(tf.constant(mixed), training=False)["encoding_indices"]
        parts.append(decode_indices(vqvae, codes))
    return np.concatenate(parts, axis=0)


def frame_seed(seed: int, frame: int) -> int:
    """The sampler's seed of `frame` of a prior walk: `seed` itself for frame 0, independent ones after.

    Frame 0 is then what `generate --seed` draws first; later frames do not reuse the noise of another
    walk's seed (seed + frame would: frame 1 of seed 0 would draw with frame 0's noise of seed 1).
    """
    if frame == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**32, frame]).generate_state(1)[0])


def prior_pan(sampler: Sampler, frames: int, seed: int, temperature: float, condition: Any = None) -> np.ndarray:
    """`frames` code grids (frames, H, W, k): a prior sample, then each one shifted left a column, refilled."""
    grids = [sampler.sample(1, frame_seed(seed, 0), temperature, condition=condition)]
    entering = np.zeros(sampler.grid, bool)
    entering[:, -1] = True
    for frame in range(1, frames):
        # The column that wraps round is the one redrawn: the mask replaces it, nothing of it is kept.
        shifted = np.roll(grids[-1], -1, axis=2)
        grids.append(
            sampler.sample(1, frame_seed(seed, frame), temperature, condition=condition, codes=shifted, mask=entering)
        )
    return np.concatenate(grids, axis=0)


def _local_copy(uri: str, temp: Path, index: int) -> Path:
    """A local file holding `uri` (a local path as it is; gs:// downloaded into `temp`)."""
    if not uri.startswith(GS_SCHEME):
        path = Path(uri)
        if not path.is_file():
            raise InputError(f"--through: {uri}: no such file")
        return path
    parent, _, name = uri.rpartition("/")
    local = temp / f"{index:04d}-{name}"
    try:
        open_store(parent).download_file(name, local)
    except FileNotFoundError as exc:
        raise InputError(f"--through: {uri}: no such object") from exc
    return local


def read_through(uris: list[str], image_size: int) -> np.ndarray:
    """The `--through` images (M, S, S, 3) in [0, 1], preprocessed as the run's training images were."""
    if len(uris) < 2:
        raise InputError(f"--through: give two or more images to walk through, got {len(uris)}")
    with tempfile.TemporaryDirectory(prefix="argomlops-through-") as temp:
        paths = [_local_copy(uri, Path(temp), i) for i, uri in enumerate(uris)]
        for uri, path in zip(uris, paths, strict=True):
            if not is_readable_image(path):
                raise InputError(f"--through: {uri} is not a readable image (PNG, JPEG, GIF, BMP or WebP)")
        images = load_images([str(p) for p in paths], image_size)
    if len(images) != len(uris):
        raise InputError(f"--through: {len(uris) - len(images)} of the images failed to decode")
    return images


def _check_args(args: argparse.Namespace) -> None:
    """InputError for arguments that are wrong whatever the run holds (checked before loading models)."""
    if not 2 <= args.frames <= MAX_FRAMES:
        raise InputError(f"--frames: must be 2..{MAX_FRAMES}, got {args.frames}")
    video_format(args.out, args.fps)
    if not args.temperature > 0:
        raise InputError(f"--temperature: must be > 0, got {args.temperature}")
    if args.through is not None and args.tags:
        raise InputError("--tags: conditions the prior walk only; a walk --through images has no tags")


def _prior_frames(store: ArtifactStore, vqvae: keras.Model, args: argparse.Namespace) -> np.ndarray:
    """The frames of a pan through the prior of the run in `store`."""
    import argomlops.trainer.pixelcnn  # noqa: F401  (registers the prior's layers for loading)

    if not store.exists(PRIOR_MODEL):
        raise InputError(f"--run: {store.uri}/{PRIOR_MODEL} not found: the run has no trained PixelCNN prior")
    sampler = Sampler(load_keras(store, PRIOR_MODEL))
    run_yaml = store.read_text("run.yaml") if store.exists("run.yaml") else None
    condition = _condition(store.uri, run_yaml, list(args.tags or []), 1, sampler.core.condition_size)
    codes = prior_pan(sampler, args.frames, args.seed, args.temperature, condition)
    return _decode(vqvae, codes)


def animate_command(args: argparse.Namespace) -> int:
    """Write the animation `args` asks for to `args.out`; returns 0 (InputError: exit 2)."""
    _check_args(args)
    started = time.monotonic()
    store = open_store(args.run)
    if not store.exists(VQVAE_MODEL):
        raise InputError(f"--run: {store.uri}/{VQVAE_MODEL} not found: the run has no trained VQ-VAE")
    vqvae = load_vqvae(store)
    if args.through is not None:
        images = read_through(list(args.through), int(vqvae.input_shape[1]))
        frames = latent_walk(vqvae, images, args.frames)
        what = f"a latent walk through {len(images)} images"
    else:
        frames = _prior_frames(store, vqvae, args)
        what = f"a pan through the prior (seed {args.seed}, temperature {args.temperature})"
    write_video((frames * 255.0 + 0.5).astype(np.uint8), args.out, args.fps)
    seconds = time.monotonic() - started
    log(f"animate: {args.frames} frames of {what} at {args.fps:g} fps written to {args.out} in {seconds:.1f} s")
    return 0
