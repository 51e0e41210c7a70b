"""Sampling code grids from the PixelCNN prior: one compiled graph for the whole batch, seeded.

`Sampler` runs the autoregressive loop (rows, then columns, then the k codes of a position) as
`tf.while_loop`s inside one `tf.function` (XLA-compiled on request), and computes every activation once,
the way the model would see it, instead of running the whole model per code:
- at the start of row i, each block's vertical pre-activation of row i-1 (what row i's horizontal stack
  is linked to) from the r+1 rows of that block's input above it, kept in per-block row caches;
- at position (i, j), each block's horizontal output at j from the r+1 columns it sees, kept in
  per-block column caches of the current row;
- then the head once per code of the position.
So a whole grid costs about two forward passes of compute, plus the loop. A dilated block (dilation d)
reads its caches at a stride of d: r*d rows above, r*d columns to the left, every d-th of them.

Given `codes` and a `mask`, only the masked positions are drawn and the rest are kept: the prior sees
the kept codes before a masked position as it goes (what `argomlops animate` uses to resample a region).

Randomness is Gumbel noise hashed from (seed, step, image, code), step = the code's index in the
sampling order, so a seed gives the same grids with or without XLA and on any device (up to float
rounding deciding near-ties). `reference_sample` is the slow,
obviously-correct loop over the full model that the tests and the benchmark compare against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from argomlops.trainer.pixelcnn import GatedPixelCNN, core_of, gate, grid_of


def _mix(x: tf.Tensor) -> tf.Tensor:
    """A 32-bit integer hash (xorshift-multiply, "lowbias32"): exact integer ops, so XLA and TF agree."""
    for shift, factor in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, shift)) * tf.constant(factor, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def _draw(logits: tf.Tensor, temperature: tf.Tensor, seed: tf.Tensor, step: Any) -> tf.Tensor:
    """One code per row of `logits` (B, K) → (B,) int32, by the Gumbel-max trick.

    The noise of (seed, step, row b, code c) is a hash of those numbers, not a stateful or
    device-specific generator: the same seed draws the same codes with or without XLA, on any device,
    and image b of a batch does not depend on how many images are drawn with it.
    """
    shape = tf.shape(logits)
    cell = tf.range(shape[0])[:, None] * shape[1] + tf.range(shape[1])[None, :]  # (B, K)
    key = _mix(tf.cast(step, tf.uint32) + _mix(tf.cast(seed, tf.uint32)))
    bits = _mix(tf.cast(cell, tf.uint32) + key)
    uniform = (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) * (2.0**-24)  # in (0, 1)
    gumbel = -tf.math.log(-tf.math.log(uniform))
    scaled = tf.cast(logits, tf.float32) / temperature
    return tf.argmax(scaled + gumbel, axis=-1, output_type=tf.int32)


class Sampler:
    """Draws (count, H, W, k) code grids from a model built by `build_pixelcnn`.

    Args:
        model: the prior (its `gated_pixelcnn` layer is used piece by piece).
        jit_compile: compile the sampling graph with XLA. It fuses the many small per-position ops:
            6-7x faster than the plain graph on a 2-core CPU for about the same first-call cost
            (bench/README.md), and the draws are identical either way.
    """

    def __init__(self, model: keras.Model, jit_compile: bool = True) -> None:
        self.core: GatedPixelCNN = core_of(model)
        self.grid = grid_of(model)
        self.k = self.core.codes_per_position
        self.conditional = self.core.condition_size > 0
        self._graph = tf.function(self._loop, jit_compile=jit_compile, reduce_retracing=True)

    def sample(
        self,
        count: int,
        seed: int = 0,
        temperature: float = 1.0,
        condition: Any = None,
        codes: Any = None,
        mask: Any = None,
    ) -> np.ndarray:
        """`count` code grids (count, H, W, k) int32.

        Args:
            condition: (count, T) tag vectors for a conditional prior.
            codes: (count, H, W, k) codes to keep where `mask` is False (default: none kept).
            mask: (H, W) or (count, H, W) booleans: True where a code is drawn (default: everywhere).
        """
        if self.conditional:
            if condition is None:
                raise ValueError("this prior is conditional: give a condition of shape (count, tags)")
            cond = tf.convert_to_tensor(np.asarray(condition, dtype="float32").reshape(count, -1))
        else:
            cond = tf.zeros((count, 0), tf.float32)
        shape = (count, *self.grid, self.k)
        given = np.zeros(shape, np.int32) if codes is None else np.asarray(codes, np.int32).reshape(shape)
        drawn = np.ones((count, *self.grid), bool) if mask is None else np.broadcast_to(mask, (count, *self.grid))
        out = self._graph(
            tf.constant(given),
            tf.constant(drawn),
            tf.constant(seed, tf.int64),
            tf.constant(temperature, tf.float32),
            cond,
        )
        return np.asarray(out)

    def _loop(
        self, codes: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor, temperature: tf.Tensor, cond: tf.Tensor
    ) -> tf.Tensor:
        core, (height, width), k = self.core, self.grid, self.k
        blocks = core.blocks
        r = core.kernel_size // 2
        # Padding of each block's row and column caches: r*d zero entries, one more column for type A.
        spans = [block.span for block in blocks]
        condition = cond if self.conditional else None
        batch = tf.shape(codes)[0]
        dtype = core.embed(codes[:1, :1, :1]).dtype
        widths = [core.codes_per_position * core.embedding_dim] + [core.filters] * (len(blocks) - 1)

        def zeros(first: int, second: int, channels: int) -> tf.Tensor:
            return tf.zeros(tf.stack([first, batch, second, channels]), dtype)

        def put(cache: tf.Tensor, index: Any, value: tf.Tensor) -> tf.Tensor:
            # Caches keep the written axis first so that one index writes a whole row or column.
            return tf.tensor_scatter_nd_update(cache, [[index]], value[None])

        def slab(cache: tf.Tensor, index: Any, dilation: int = 1) -> tf.Tensor:
            # r+1 entries of the written axis, every `dilation`-th from `index` (static sizes, so XLA can
            # compile it), batch first.
            rank = len(cache.shape)
            begin = tf.concat([tf.reshape(index, [1]), tf.zeros([rank - 1], tf.int32)], 0)
            part = tf.slice(cache, begin, [r * dilation + 1] + [-1] * (rank - 1))[::dilation]
            return tf.transpose(part, [1, 0, 2, 3]) if rank == 4 else tf.transpose(part, [1, 0, 2])[:, None]

        def row_step(i: tf.Tensor, codes: tf.Tensor, rows: list[tf.Tensor]) -> tuple[Any, ...]:
            # 1. Rows caches hold each block's vertical input, r zero rows on top (the conv's padding).
            #    Bring them to row i-1 and keep each block's pre-activation there: row i's links.
            rows = list(rows)
            links = []
            above = tf.maximum(i - 1, 0)
            rows[0] = put(rows[0], above + spans[0], core.embed(codes[:, above]))
            for n, block in enumerate(blocks):
                pre = block.vertical_row(slab(rows[n], above, block.dilation), condition)
                if n + 1 < len(blocks):
                    rows[n + 1] = put(rows[n + 1], above + spans[n + 1], gate(pre)[:, 0])
                # Row 0 has nothing above it: its links are the conv of zeros, as in the full model.
                links.append(tf.where(i > 0, pre, tf.zeros_like(pre)))
            columns = [
                zeros(width + spans[n] + (1 if n == 0 else 0), 1, widths[n])[:, :, 0] for n in range(len(blocks))
            ]
            _, codes, _ = tf.while_loop(
                lambda j, *_: j < width,
                lambda j, codes, columns: column_step(i, j, codes, list(columns), links),
                (tf.constant(0), codes, columns),
            )
            return i + 1, codes, rows

        def column_step(i: Any, j: Any, codes: tf.Tensor, columns: list[tf.Tensor], links: list[Any]) -> tuple:
            # 2. Column caches hold each block's horizontal input along row i, left-padded so that the
            #    r+1 entries from index j are exactly what position j sees (type A: one more to the left).
            h = columns[0][:0]  # replaced by the first block's output
            for n, block in enumerate(blocks):
                seen = slab(columns[n], j, block.dilation)
                h = block.horizontal_at(seen, tf.gather(links[n], [j], axis=2), condition)
                if n + 1 < len(blocks):
                    columns[n + 1] = put(columns[n + 1], j + spans[n + 1], h[:, 0, 0])
            features = h[:, 0, 0]  # (B, F)
            # 3. The k codes of the position, each from the ones drawn before it there (or kept, off the mask).
            for c in range(k):
                logits = core.head(features, core.embed(codes[:, i, j]))[:, c]  # (B, K)
                drawn = _draw(logits, temperature, seed, (i * width + j) * k + c)
                drawn = tf.where(mask[:, i, j], drawn, codes[:, i, j, c])
                index = tf.stack([tf.range(batch), tf.fill([batch], i), tf.fill([batch], j), tf.fill([batch], c)], 1)
                codes = tf.tensor_scatter_nd_update(codes, index, drawn)
            columns[0] = put(columns[0], j + spans[0] + 1, core.embed(codes[:, i, j]))
            return j + 1, codes, columns

        rows = [zeros(height + spans[n], width, widths[n]) for n in range(len(blocks))]
        _, codes, _ = tf.while_loop(lambda i, *_: i < height, row_step, (tf.constant(0), codes, rows))
        return codes


def reference_sample(
    model: keras.Model,
    count: int,
    seed: int = 0,
    temperature: float = 1.0,
    condition: Any = None,
    call: Callable[[Any], Any] | None = None,
    codes: Any = None,
    mask: Any = None,
) -> np.ndarray:
    """The same draws as `Sampler.sample`, by running the whole model once per code (slow; for checks).

    Args:
        call: how to run the model on a batch (default: `model(x)`; the benchmark passes `model.predict`).
    """
    run = call or (lambda x: model(x))
    core = core_of(model)
    (height, width), k = grid_of(model), core.codes_per_position
    shape = (count, height, width, k)
    codes = np.zeros(shape, "int32") if codes is None else np.array(codes, "int32").reshape(shape)
    drawn_at = np.ones(shape[:3], bool) if mask is None else np.broadcast_to(mask, shape[:3])
    cond = None if condition is None else np.asarray(condition, dtype="float32").reshape(count, -1)
    for i in range(height):
        for j in range(width):
            for c in range(k):
                logits = np.asarray(run(codes if cond is None else {"codes": codes, "tags": cond}))
                step = (i * width + j) * k + c
                drawn = _draw(tf.constant(logits[:, i, j, c]), tf.constant(temperature, tf.float32), seed, step)
                codes[:, i, j, c] = np.where(drawn_at[:, i, j], drawn.numpy(), codes[:, i, j, c])
    return codes
