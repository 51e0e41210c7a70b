"""Sampling code grids from the PixelCNN prior: one compiled graph for the whole batch, seeded.

`Sampler` runs the autoregressive loop (rows → columns → codes of a position) as `tf.while_loop`s inside
one `tf.function` (XLA-compiled on request). Per position it recomputes only what a new code can change:
- the vertical stack once per row, over a window of `receptive_rows + 2` rows ending at the row, which is
  all the vertical links of the row depend on (rows further up cannot reach it);
- the horizontal stack over that single row, once per position;
- the head once per code of the position.

Randomness is `tf.random.stateless_categorical` keyed by (seed, step), step = the code's index in the
sampling order, so a seed gives the same grid whatever the batch is split into or the device is.
`reference_sample` is the slow, obviously-correct loop over the full model that the tests and the
benchmark compare against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from argomlops.trainer.pixelcnn import GatedPixelCNN, core_of


def _draw(logits: tf.Tensor, temperature: tf.Tensor, seed: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """One code per row of `logits` (B, K) → (B,) int32; the same (seed, step) gives the same draw."""
    scaled = tf.cast(logits, tf.float32) / temperature
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    return tf.random.stateless_categorical(scaled, 1, key, dtype=tf.int32)[:, 0]


class Sampler:
    """Draws (count, H, W, k) code grids from a model built by `build_pixelcnn`.

    Args:
        model: the prior (its `gated_pixelcnn` layer is used piece by piece).
        jit_compile: compile the sampling graph with XLA (worth it on GPUs; not on CPUs).
    """

    def __init__(self, model: keras.Model, jit_compile: bool = False) -> None:
        self.core: GatedPixelCNN = core_of(model)
        codes_shape = model.inputs[0].shape if len(model.inputs) == 1 else model.get_layer("codes").output.shape
        self.grid = (int(codes_shape[1]), int(codes_shape[2]))
        self.k = self.core.codes_per_position
        self.conditional = self.core.condition_size > 0
        self._graph = tf.function(self._loop, jit_compile=jit_compile, reduce_retracing=True)

    def sample(self, count: int, seed: int = 0, temperature: float = 1.0, condition: Any = None) -> np.ndarray:
        """`count` code grids (count, H, W, k) int32; `condition` (count, T) for a conditional prior."""
        if self.conditional:
            if condition is None:
                raise ValueError("this prior is conditional: give a condition of shape (count, tags)")
            cond = tf.convert_to_tensor(np.asarray(condition, dtype="float32").reshape(count, -1))
        else:
            cond = tf.zeros((count, 0), tf.float32)
        codes = self._graph(
            tf.zeros((count, *self.grid, self.k), tf.int32),
            tf.constant(seed, tf.int64),
            tf.constant(temperature, tf.float32),
            cond,
        )
        return np.asarray(codes)

    def _loop(self, codes: tf.Tensor, seed: tf.Tensor, temperature: tf.Tensor, cond: tf.Tensor) -> tf.Tensor:
        core, (height, width), k = self.core, self.grid, self.k
        condition = cond if self.conditional else None
        window = min(core.receptive_rows + 2, height)
        batch = tf.shape(codes)[0]
        batch_index = tf.range(batch)
        for i in tf.range(height):
            # 1. Vertical links of row i: they depend on rows < i only, so compute them once per row.
            start = tf.clip_by_value(i - 1 - core.receptive_rows, 0, height - window)
            rows = tf.slice(codes, [0, start, 0, 0], [-1, window, -1, -1])
            links = [tf.gather(link, [i - start], axis=1) for link in core.vertical_links(core.embed(rows), condition)]
            for j in tf.range(width):
                # 2. Horizontal stack over row i (columns < j are final), read at column j.
                row = core.embed(tf.gather(codes, [i], axis=1))  # (B, 1, W, k*E)
                features = core.horizontal_rows(row, links, condition)[:, 0, j]  # (B, F)
                for c in range(k):
                    # 3. Code c of position (i, j) from the codes 0..c-1 already drawn there.
                    here = core.embed(codes[:, i, j])  # (B, k*E)
                    logits = core.head(features, here)[:, c]  # (B, K)
                    step = (i * width + j) * k + c
                    drawn = _draw(logits, temperature, seed, step)
                    index = tf.stack(
                        [batch_index, tf.fill([batch], i), tf.fill([batch], j), tf.fill([batch], c)], axis=1
                    )
                    codes = tf.tensor_scatter_nd_update(codes, index, drawn)
        return codes


def reference_sample(
    model: keras.Model,
    count: int,
    seed: int = 0,
    temperature: float = 1.0,
    condition: Any = None,
    call: Callable[[Any], Any] | None = None,
) -> np.ndarray:
    """The same draws as `Sampler.sample`, by running the whole model once per code (slow; for checks).

    Args:
        call: how to run the model on a batch (default: `model(x)`; the benchmark passes `model.predict`).
    """
    run = call or (lambda x: model(x))
    core = core_of(model)
    shape = model.inputs[0].shape if len(model.inputs) == 1 else model.get_layer("codes").output.shape
    height, width, k = int(shape[1]), int(shape[2]), core.codes_per_position
    codes = np.zeros((count, height, width, k), dtype="int32")
    cond = None if condition is None else np.asarray(condition, dtype="float32").reshape(count, -1)
    for i in range(height):
        for j in range(width):
            for c in range(k):
                logits = np.asarray(run(codes if cond is None else {"codes": codes, "tags": cond}))
                step = (i * width + j) * k + c
                drawn = _draw(tf.constant(logits[:, i, j, c]), tf.constant(temperature, tf.float32), seed, step)
                codes[:, i, j, c] = drawn.numpy()
    return codes
