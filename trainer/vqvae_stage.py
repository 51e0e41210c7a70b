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
from argomlops.errors import InputError
from argomlops.trainer.data import image_dataset, load_images, select_images
from argomlops.trainer.images import reconstruction_png
from argomlops.trainer.logs import log
from argomlops.trainer.run import Run
from argomlops.trainer.stage import StageParts, StageResult, run_stage
from argomlops.trainer.vqvae import build_vqvae

STAGE = "vqvae"
GRID_IMAGES = 8


def make_optimizer(learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam, wrapped in dynamic loss scaling when the global policy is mixed precision."""
    optimizer = keras.optimizers.Adam(learning_rate)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def vqvae_steps(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> tuple[Any, Any]:
    """The train step and validation step of a VQ-VAE (plain functions; the runner compiles them)."""

    def train_step(images: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            out = model(images, training=True)
            mse = tf.reduce_mean(tf.square(out["reconstruction"] - images))
            loss = mse + out["vq_loss"]
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return {
            "loss": loss,
            "mse": mse,
            "vq_loss": out["vq_loss"],
            "perplexity": out["perplexity"],
            "usage": out["usage"],
        }

    def validation_step(images: tf.Tensor) -> dict[str, tf.Tensor]:
        out = model(images, training=False)
        mse = tf.reduce_mean(tf.square(out["reconstruction"] - images))
        clipped = tf.clip_by_value(out["reconstruction"], 0.0, 1.0)
        per_image = tf.reduce_mean(tf.square(clipped - images), axis=[1, 2, 3])
        psnr = tf.reduce_mean(10.0 * tf.math.log(1.0 / tf.maximum(per_image, 1e-10)) / tf.math.log(10.0))
        return {
            "loss": mse + out["vq_loss"],
            "mse": mse,
            "vq_loss": out["vq_loss"],
            "perplexity": out["perplexity"],
            "usage": out["usage"],
            "psnr": psnr,
        }

    return train_step, validation_step


def vqvae_parts(config: RunConfig, train: list[str], validation: list[str]) -> StageParts:
    """The VQ-VAE's model, optimizer, steps, data and images for the stage runner."""
    settings, size, seed = config.training.vqvae, config.data.image_size, config.training.seed
    if len(train) < settings.batch_size:
        raise InputError(
            f"training.vqvae.batchSize: {settings.batch_size} is more than the {len(train)} training images"
        )
    model = build_vqvae(config.models.vqvae, size, seed=seed)
    optimizer = make_optimizer(settings.learning_rate)
    train_step, validation_step = vqvae_steps(model, optimizer)
    # Validation is the held-out split; a data set too small to have one shows training images instead.
    fixed = load_images((validation or train)[:GRID_IMAGES], size)

    def train_batches(epoch: int) -> Any:
        # Seeded by the epoch: a resumed run sees the same order an uninterrupted one would.
        return image_dataset(
            train,
            size,
            settings.batch_size,
            shuffle=True,
            seed=seed + epoch,
            repeat=True,
        )

    def validation_batches() -> Any:
        return image_dataset(validation, size, settings.batch_size, shuffle=False, seed=seed, drop_remainder=False)

    def images(epoch: int) -> bytes:
        out = model(tf.convert_to_tensor(fixed), training=False)
        return reconstruction_png(fixed, np.clip(np.asarray(out["reconstruction"]), 0.0, 1.0))

    return StageParts(
        model=model,
        optimizer=optimizer,
        train_step=train_step,
        validation_step=validation_step if validation else None,
        train_batches=train_batches,
        validation_batches=validation_batches if validation else None,
        steps_per_epoch=len(train) // settings.batch_size,
        examples_per_step=settings.batch_size,
        images=images,
        images_dir="reconstructions",
        monitor="val_loss" if validation else "train_loss",
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
