"""What a stage's training steps are made of: the optimizer and one gradient step over a metrics function.

A stage describes its model by one function, `metrics(batch, training) -> {"loss": ..., ...}`: the
runner minimises `loss` with `train_step(model, optimizer, metrics)` and reports every other entry as
a metric, and validates with `metrics(batch, training=False)`. So a stage never writes a GradientTape,
and both stages scale losses for mixed precision the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf

MetricsFn = Callable[[Any, bool], Mapping[str, Any]]
"""`(batch, training) -> metrics`; the dict holds at least `loss`, the value training minimises."""


COSINE_FLOOR = 0.05
"""Where a cosine schedule ends, as a share of the peak learning rate."""


def make_optimizer(
    learning_rate: float, schedule: str = "constant", total_steps: int = 0, warmup_steps: int = 0
) -> keras.optimizers.Optimizer:
    """Adam, wrapped in dynamic loss scaling when the global policy is mixed precision.

    With `schedule="cosine"` the rate warms up linearly over `warmup_steps`, then follows a cosine from
    `learning_rate` down to `COSINE_FLOOR` of it at `total_steps`. The rate is a function of the
    optimizer's own step counter, which checkpoints keep, so a resumed stage continues the same curve.
    """
    rate: Any = learning_rate
    if schedule == "cosine":
        warmup = min(warmup_steps, max(0, total_steps - 1))
        decay = max(1, total_steps - warmup)
        if warmup:
            rate = keras.optimizers.schedules.CosineDecay(
                0.0, decay, alpha=COSINE_FLOOR, warmup_target=learning_rate, warmup_steps=warmup
            )
        else:
            rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay, alpha=COSINE_FLOOR)
    elif schedule != "constant":
        raise ValueError(f"unknown learning rate schedule {schedule!r}")
    optimizer = keras.optimizers.Adam(rate)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def train_step(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, metrics: MetricsFn
) -> Callable[[Any], Mapping[str, Any]]:
    """One optimizer step on `metrics(batch, training=True)["loss"]`; returns that step's metrics (uncompiled)."""

    def step(batch: Any) -> Mapping[str, Any]:
        with tf.GradientTape() as tape:
            values = metrics(batch, True)
            # A no-op without loss scaling; under mixed precision it keeps fp16 gradients from underflowing.
            scaled = optimizer.scale_loss(values["loss"])
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return values

    return step
