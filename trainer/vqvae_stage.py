"""Stage 1: train the VQ-VAE on the selected images with the shared stage runner.

Per step it reports loss (reconstruction MSE + VQ loss), mse, vq_loss, perplexity and usage (the
fraction of codes used in the batch); validation adds psnr (dB, reconstructions clipped to [0, 1]).
Every `imagesEvery` epochs and at the end, `vqvae/reconstructions/epoch-NNNN.png` shows a fixed batch
of validation images, each beside its reconstruction.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from argomlops.config import RunConfig
from argomlops.trainer.data import select_images
from argomlops.trainer.images import reconstruction_png
from argomlops.trainer.logs import log
from argomlops.trainer.pipeline import image_dataset, load_images
from argomlops.trainer.run import Run
from argomlops.trainer.stage import StageParts, StageResult, run_stage
from argomlops.trainer.steps import MetricsFn
from argomlops.trainer.vqvae import build_vqvae

STAGE = "vqvae"
GRID_IMAGES = 8


def vqvae_metrics(model: keras.Model) -> MetricsFn:
    """The VQ-VAE's loss (reconstruction MSE + VQ loss) and metrics of a batch; validation adds PSNR."""

    def metrics(images: tf.Tensor, training: bool) -> dict[str, tf.Tensor]:
        out = model(images, training=training)
        mse = tf.reduce_mean(tf.square(out["reconstruction"] - images))
        values = {
            "loss": mse + out["vq_loss"],
            "mse": mse,
            "vq_loss": out["vq_loss"],
            "perplexity": out["perplexity"],
            "usage": out["usage"],
        }
        if not training:
            clipped = tf.clip_by_value(out["reconstruction"], 0.0, 1.0)
            per_image = tf.reduce_mean(tf.square(clipped - images), axis=[1, 2, 3])
            values["psnr"] = tf.reduce_mean(10.0 * tf.math.log(1.0 / tf.maximum(per_image, 1e-10)) / tf.math.log(10.0))
        return values

    return metrics


def vqvae_parts(config: RunConfig, train: list[str], validation: list[str]) -> StageParts:
    """The VQ-VAE's model, optimizer, metrics, data and images for the stage runner."""
    settings, size, seed = config.training.vqvae, config.data.image_size, config.training.seed
    model = build_vqvae(config.models.vqvae, size, seed=seed)
    # Validation is the held-out split; a data set too small to have one shows training images instead.
    fixed = load_images((validation or train)[:GRID_IMAGES], size)

    def train_batches(epoch: int) -> Any:
        # Seeded by the epoch: a resumed run sees the same order an uninterrupted one would.
        return image_dataset(train, size, settings.batch_size, shuffle=True, seed=seed + epoch, repeat=True)

    def validation_batches() -> Any:
        return image_dataset(validation, size, settings.batch_size, shuffle=False, seed=seed, drop_remainder=False)

    def images(epoch: int) -> bytes:
        out = model(tf.convert_to_tensor(fixed), training=False)
        return reconstruction_png(fixed, np.clip(np.asarray(out["reconstruction"]), 0.0, 1.0))

    return StageParts(
        model=model,
        metrics=vqvae_metrics(model),
        train_batches=train_batches,
        train_examples=len(train),
        validation_batches=validation_batches if validation else None,
        images=images,
        images_dir="reconstructions",
    )


def run_vqvae_stage(run: Run) -> StageResult:
    """Train (or resume, or skip when done) the VQ-VAE stage of `run`."""
    config = run.config

    def build() -> StageParts:
        selection = select_images(config.data, log=log)
        log(
            f"{STAGE}: {len(selection.train)} training, {len(selection.validation)} validation images "
            f"({selection.skipped} unreadable skipped)"
        )
        return vqvae_parts(config, selection.train, selection.validation)

    return run_stage(run, STAGE, config.training.vqvae, build)
