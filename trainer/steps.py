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

from argomlops.trainer.replicas import replica_share

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
    """One optimizer step on `metrics(batch, training=True)["loss"]`; returns that step's metrics (uncompiled).

    Run on each replica of a multi-replica strategy (`distributed_train_step`), it returns the replica's
    metrics weighted by its share of the global batch: their sum over the replicas is the global mean.
    """

    def step(batch: Any) -> Mapping[str, Any]:
        share = replica_share(batch)  # None on one device: the step stays what it always was
        with tf.GradientTape() as tape:
            values = metrics(batch, True)
            loss = values["loss"] if share is None else values["loss"] * share
            # A no-op without loss scaling; under mixed precision it keeps fp16 gradients from underflowing.
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        # Under several replicas the optimizer sums the gradients: those of the global batch's mean loss.
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        if share is None:
            return values
        # Weighted by the share, the replicas' metrics sum to the global batch's means.
        return {name: tf.cast(value, tf.float32) * share for name, value in values.items()}

    return step


def distributed_train_step(
    strategy: tf.distribute.Strategy, step: Callable[[Any], Mapping[str, Any]]
) -> Callable[[Any], Mapping[str, Any]]:
    """`step` compiled for a batch of `strategy`'s distributed dataset; returns the global batch's metrics.

    Without XLA, as Keras's `fit` does under tf.distribute: a jit-compiled replica step reads a variable
    of one replica from another's device (TF 2.21, "tf.Variable on a different device").
    """

    @tf.function
    def distributed(batch: Any) -> Mapping[str, Any]:
        values = strategy.run(step, args=(batch,))
        return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for name, value in values.items()}

    return distributed
