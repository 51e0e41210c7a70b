"""`training`: optimisation, precision and artifact cadence of both stages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from argomlops.config.base import Section


class StageTraining(Section):
    """Optimisation and artifact cadence of one stage."""

    epochs: int = Field(10, ge=1, le=100000, description="Epochs to train.")
    batch_size: int = Field(
        32,
        ge=1,
        le=4096,
        description="Images (or code grids) per step, all GPUs of the pod together: with placement.gpus > 1 "
        "each GPU takes its share of every batch, so a run stays comparable when only gpus changes.",
    )
    learning_rate: float = Field(
        3e-4,
        gt=0.0,
        le=1.0,
        description="Adam learning rate (the peak, with a schedule); used as given for any number of GPUs, "
        "since the global batch does not change with them.",
    )
    learning_rate_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="constant, or cosine: decay from learningRate to 5 % of it over the stage's steps "
        "(short runs end better converged).",
    )
    warmup_steps: int = Field(
        0, ge=0, description="Steps of linear warm-up from 0 to learningRate before the schedule (cosine only)."
    )
    steps_per_epoch: int | None = Field(
        None, ge=1, description="Steps per epoch (default: one pass over the training split)."
    )
    checkpoint_every: int = Field(1, ge=1, description="Write a checkpoint every this many epochs.")
    images_every: int = Field(
        5,
        ge=0,
        description="Write a reconstruction grid (vqvae) or samples (pixelcnn) every this many epochs; "
        "0 = only at the end of training.",
    )


class PixelCNNTraining(StageTraining):
    """Stage 2 training, plus sampling settings."""

    images_every: int = Field(0, ge=0, description="Write samples every this many epochs; 0 = only at the end.")
    sample_count: int = Field(16, ge=1, le=1024, description="Generated images in each samples grid.")
    temperature: float = Field(1.0, gt=0.0, le=10.0, description="Softmax temperature of sampling.")
    evaluate_count: int = Field(
        64,
        ge=0,
        le=4096,
        description="At the end of the stage, judge this many generated images (per tag for a conditional "
        "prior) as `argomlops evaluate` does, writing evaluation.json; 0 = do not evaluate.",
    )


class TrainingConfig(Section):
    """How both stages train."""

    seed: int = Field(0, ge=0, description="Seed of weights, shuffling and sampling.")
    mixed_precision: bool = Field(False, description="Train in mixed_float16 (worth it on T4 GPUs).")
    jit_compile: bool = Field(
        False, description="Compile train steps with XLA (on one device; several GPUs train without it)."
    )
    vqvae: StageTraining = Field(default_factory=StageTraining, description="Stage 1 training.")
    pixelcnn: PixelCNNTraining = Field(default_factory=PixelCNNTraining, description="Stage 2 training.")
