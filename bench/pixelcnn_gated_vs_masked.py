"""Validation bits per code: the gated PixelCNN vs a plain masked-convolution PixelCNN (with blind spot).

Both train on the same stored code grids (`<run>/pixelcnn/codes/`, written by the pixelcnn stage) for
the same steps, batch, learning rate and batch order, at about the same parameter count. The plain
model is the original PixelCNN: a 7x7 type-A masked convolution, then residual blocks of 3x3 type-B
masked convolutions, which leave a blind spot above-right of each position.

    .venv/bin/python bench/pixelcnn_gated_vs_masked.py --run runs/<run-id> --steps 2000
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from argomlops.config import PixelCNNConfig
from argomlops.trainer.codes import read_split
from argomlops.trainer.pixelcnn import build_pixelcnn
from argomlops.trainer.prior_stage import prior_metrics
from argomlops.trainer.storage import open_store


class MaskedConv2D(keras.layers.Layer):
    """A convolution whose kernel sees only positions before the centre (A) or also the centre (B)."""

    def __init__(self, filters: int, kernel_size: int, mask_type: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(filters, kernel_size, padding="same")
        self.kernel_size, self.mask_type = kernel_size, mask_type

    def build(self, input_shape: Any) -> None:
        self.conv.build(input_shape)
        n, centre = self.kernel_size, self.kernel_size // 2
        mask = np.zeros((n, n, 1, 1), np.float32)
        mask[:centre] = 1.0
        mask[centre, : centre + (1 if self.mask_type == "B" else 0)] = 1.0
        self.mask = mask

    def call(self, x: Any) -> Any:
        kernel = self.conv.kernel * self.mask
        return tf.nn.conv2d(x, kernel, 1, "SAME") + self.conv.bias


def build_masked(grid: tuple[int, int], codes: int, filters: int, layers: int, embedding_dim: int) -> keras.Model:
    inputs = keras.Input((*grid, 1), dtype="int32")
    x = keras.layers.Embedding(codes, embedding_dim)(inputs[..., 0])
    x = MaskedConv2D(2 * filters, 7, "A")(x)
    for _ in range(layers):
        h = keras.layers.ReLU()(x)
        h = keras.layers.Conv2D(filters, 1)(h)
        h = MaskedConv2D(filters, 3, "B")(keras.layers.ReLU()(h))
        h = keras.layers.Conv2D(2 * filters, 1)(keras.layers.ReLU()(h))
        x = x + h
    x = keras.layers.Conv2D(2 * filters, 1, activation="relu")(keras.layers.ReLU()(x))
    logits = keras.layers.Conv2D(codes, 1)(x)
    return keras.Model(inputs, keras.layers.Reshape((*grid, 1, codes))(logits))


def load_codes(run: str) -> tuple[np.ndarray, np.ndarray]:
    store = open_store(run)
    train, validation = (read_split(store, name).codes.astype(np.int32) for name in ("train", "validation"))
    return train, validation


def unigram_bits(train: np.ndarray, validation: np.ndarray, codes: int) -> tuple[float, float]:
    """Entropy of the training codes' frequencies, and the validation codes' cross-entropy under them."""
    counts = np.bincount(train.ravel(), minlength=codes).astype(np.float64)
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    smoothed = (counts + 1.0) / (counts.sum() + codes)  # add-one: unseen validation codes stay finite
    cross = float(-np.log2(smoothed[validation.ravel()]).mean())
    return entropy, cross


def train(model: keras.Model, train_codes: np.ndarray, validation: np.ndarray, args: argparse.Namespace) -> dict:
    optimizer = keras.optimizers.Adam(args.learning_rate)

    @tf.function
    def step(batch: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            metrics = prior_metrics(model(batch, training=True), batch)
        grads = tape.gradient(metrics["loss"], model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return metrics

    evaluate = tf.function(lambda batch: prior_metrics(model(batch, training=False), batch))
    rng = np.random.default_rng(args.seed)  # the same batch order for both models
    started = time.perf_counter()
    for _ in range(args.steps):
        step(tf.constant(train_codes[rng.integers(0, len(train_codes), args.batch)]))
    seconds = time.perf_counter() - started
    totals = {"bits_per_code": 0.0, "accuracy": 0.0}
    for start in range(0, len(validation), 256):
        part = validation[start : start + 256]
        out = evaluate(tf.constant(part))
        for key in totals:
            totals[key] += float(out[key]) * len(part)
    result = {key: value / len(validation) for key, value in totals.items()}
    result.update(params=model.count_params(), steps_per_s=args.steps / seconds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run with pixelcnn/codes/ (local or gs://)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--filters", type=int, default=64, help="gated PixelCNN filters")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--masked-filters", type=int, default=0, help="0: pick the size closest to the gated one")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train_codes, validation = load_codes(args.run)
    if train_codes.shape[-1] != 1:
        raise SystemExit("the masked baseline handles k = 1 only")
    grid, codes = (int(train_codes.shape[1]), int(train_codes.shape[2])), int(max(train_codes.max(), validation.max()))
    codes = max(codes + 1, 2)
    config = PixelCNNConfig(filters=args.filters, layers=args.layers)
    keras.utils.set_random_seed(args.seed)
    gated = build_pixelcnn(config, grid, codes)
    masked_filters = args.masked_filters or min(
        range(8, 257, 4),
        key=lambda f: abs(
            build_masked(grid, codes, f, args.layers, config.embedding_dim).count_params() - gated.count_params()
        ),
    )
    keras.utils.set_random_seed(args.seed)
    masked = build_masked(grid, codes, masked_filters, args.layers, config.embedding_dim)

    entropy, cross = unigram_bits(train_codes, validation, codes)
    print(f"codes: {args.run}: {len(train_codes)} train, {len(validation)} validation grids of {grid}, K used {codes}")
    print(f"unigram: entropy of training codes {entropy:.3f} bits; validation cross-entropy {cross:.3f} bits/code")
    print(f"training: {args.steps} steps, batch {args.batch}, Adam {args.learning_rate}, same batch order")
    for name, model in (
        ("gated (no blind spot)", gated),
        (f"masked conv (blind spot, {masked_filters} filters)", masked),
    ):
        keras.utils.set_random_seed(args.seed)
        r = train(model, train_codes, validation, args)
        print(
            f"{name}: {r['params']:,} params, val {r['bits_per_code']:.3f} bits/code, "
            f"val accuracy {r['accuracy']:.3f}, {r['steps_per_s']:.1f} steps/s"
        )
    print(f"(a uniform guess over the {codes} codes: {math.log2(codes):.3f} bits/code)")


if __name__ == "__main__":
    main()
