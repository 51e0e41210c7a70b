"""`argomlops generate`: images drawn from a finished run's prior and decoded by its VQ-VAE.

    argomlops generate --run runs/2026-11-27_09h01m09s --count 64 --out out/ [--temperature 1.0] [--seed N]

reads `<run>/pixelcnn/model.keras` and `<run>/vqvae/model.keras` (local or gs://) and writes
`sample-0000.png` ... one per image plus `grid.png` to `--out` (a folder or gs:// prefix). The same
run, seed, count and temperature give the same images. `--tags standing` conditions a prior trained
with `models.pixelcnn.conditionOnTags` on those tags. On a terminal a live bar shows the phase and the
images written (`progress.terminal_progress`); elsewhere only the plain log line.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from argomlops.errors import InputError
from argomlops.trainer.checkpoint import load_keras
from argomlops.trainer.codes import load_vqvae
from argomlops.trainer.images import grid, samples_png, to_png
from argomlops.trainer.logs import log
from argomlops.trainer.progress import terminal_progress
from argomlops.trainer.sampler import Sampler
from argomlops.trainer.storage import open_store
from argomlops.trainer.vqvae import decode_indices

PRIOR_MODEL = "pixelcnn/model.keras"
MAX_COUNT = 4096


def _condition(store_uri: str, run_yaml: str | None, tags: list[str], count: int, size: int) -> np.ndarray | None:
    """The (count, T) tag vector of `--tags`, checked against the tags the prior was trained with."""
    import yaml

    names: list[str] = []
    if run_yaml is not None:
        config = yaml.safe_load(run_yaml) or {}
        names = list(config.get("models", {}).get("pixelcnn", {}).get("conditionOnTags", []) or [])
    if size == 0:
        if tags:
            raise InputError(f"--tags: the prior of {store_uri} is unconditional (no conditionOnTags)")
        return None
    if len(names) != size:
        raise InputError(f"{store_uri}/run.yaml: conditionOnTags does not match the prior's {size} tag inputs")
    unknown = sorted(set(tags) - set(names))
    if unknown:
        raise InputError(f"--tags: {unknown} not among the tags this prior knows: {names}")
    vector = np.array([name in tags for name in names], np.float32)
    return np.repeat(vector[None], count, axis=0)


def generate_command(args: argparse.Namespace) -> int:
    """Write `args.count` generated images and their grid to `args.out`; returns 0 (InputError: exit 2)."""
    import argomlops.trainer.pixelcnn  # noqa: F401  (registers the prior's layers for loading)

    if not 1 <= args.count <= MAX_COUNT:
        raise InputError(f"--count: must be 1..{MAX_COUNT}, got {args.count}")
    if not args.temperature > 0:
        raise InputError(f"--temperature: must be > 0, got {args.temperature}")
    store = open_store(args.run)
    if not store.exists(PRIOR_MODEL):
        raise InputError(f"--run: {store.uri}/{PRIOR_MODEL} not found: the run has no trained PixelCNN prior")
    vqvae = load_vqvae(store)
    prior = load_keras(store, PRIOR_MODEL)
    sampler = Sampler(prior)
    run_yaml = store.read_text("run.yaml") if store.exists("run.yaml") else None
    condition = _condition(store.uri, run_yaml, list(args.tags or []), args.count, sampler.core.condition_size)
    out = open_store(args.out)
    # One compiled graph draws every code grid at once, so the bar can only count the images written.
    with terminal_progress("generate: sampling", args.count, unit="images") as bar:
        codes = sampler.sample(args.count, seed=args.seed, temperature=args.temperature, condition=condition)
        bar.update(0, "generate: decoding")
        images = decode_indices(vqvae, codes)
        for i, image in enumerate(images):
            out.write_bytes(f"sample-{i:04d}.png", to_png(grid(image[None], columns=1, gap=0), min_side=0))
            bar.update(i + 1, "generate: writing")
        out.write_bytes("grid.png", samples_png(images, columns=max(1, math.ceil(math.sqrt(args.count)))))
    log(f"generate: {args.count} images (seed {args.seed}, temperature {args.temperature}) written to {out.uri}")
    return 0
