"""Sampling and training speed of the gated PixelCNN vs `tfp.distributions.PixelCNN` at a similar size.

tfp 0.25 runs on Keras 2 (tf-keras), so this runs in a separate environment made from the `bench` extra:

    python3 -m venv /work/venv-bench
    /work/venv-bench/bin/pip install "tensorflow==2.21.*" "tensorflow-probability==0.25.*" "tf-keras==2.21.*"
    /work/venv-bench/bin/pip install -e . --no-deps && /work/venv-bench/bin/pip install pydantic pyyaml pillow
    /work/venv-bench/bin/python bench/pixelcnn_vs_tfp.py --grid 16 --count 8 --tfp-filters 24

Both models get the same random code grids (K codes, drawn uniformly: only speed is measured here).
tfp's PixelCNN models ordinal values with a discretized logistic mixture, so it is given the codes as
values in [0, K-1]; the gated PixelCNN treats them as categories.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp  # pyright: ignore[reportMissingImports]  (the bench extra, not installed for tests)

from argomlops.config import PixelCNNConfig
from argomlops.trainer.pixelcnn import build_pixelcnn
from argomlops.trainer.sampler import Sampler


def _timed(fn, repeat: int = 1) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def tfp_side(args: argparse.Namespace, codes: np.ndarray) -> dict[str, float]:
    dist = tfp.distributions.PixelCNN(
        image_shape=(args.grid, args.grid, 1),
        num_resnet=args.tfp_resnets,
        num_hierarchies=args.tfp_hierarchies,
        num_filters=args.tfp_filters,
        num_logistic_mix=5,
        dropout_p=0.0,
        high=args.codes - 1,
    )
    optimizer = tf.keras.optimizers.Adam(1e-3)
    images = tf.constant(codes[..., None].astype("float32"))

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(images))
        grads = tape.gradient(loss, dist.trainable_variables)
        optimizer.apply_gradients(zip(grads, dist.trainable_variables, strict=True))
        return loss

    step()
    params = sum(int(np.prod(v.shape)) for v in dist.trainable_variables)
    train = _timed(lambda: [step() for _ in range(args.steps)])
    first = _timed(lambda: dist.sample(args.count, seed=1).numpy())
    sample = _timed(lambda: dist.sample(args.count, seed=2).numpy())
    return {"params": params, "steps_per_s": args.steps / train, "first_sample_s": first, "sample_s": sample}


def gated_side(args: argparse.Namespace, codes: np.ndarray) -> dict[str, float]:
    import keras

    config = PixelCNNConfig(filters=args.filters, layers=args.layers)
    model = build_pixelcnn(config, (args.grid, args.grid), args.codes)
    optimizer = keras.optimizers.Adam(1e-3)
    batch = tf.constant(codes[..., None])

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = model(batch, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(batch, logits, from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    step()
    train = _timed(lambda: [step() for _ in range(args.steps)])
    sampler = Sampler(model)
    first = _timed(lambda: sampler.sample(args.count, seed=1))
    sample = _timed(lambda: sampler.sample(args.count, seed=2), repeat=3)
    return {
        "params": model.count_params(),
        "steps_per_s": args.steps / train,
        "first_sample_s": first,
        "sample_s": sample,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=16)
    parser.add_argument("--count", type=int, default=8, help="grids sampled at once")
    parser.add_argument("--codes", type=int, default=128, help="codebook size K")
    parser.add_argument("--batch", type=int, default=32, help="training batch")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--filters", type=int, default=64, help="gated PixelCNN filters")
    parser.add_argument("--layers", type=int, default=6, help="gated PixelCNN layers")
    parser.add_argument("--tfp-filters", type=int, default=64)
    parser.add_argument("--tfp-resnets", type=int, default=2)
    parser.add_argument("--tfp-hierarchies", type=int, default=2)
    args = parser.parse_args()
    codes = np.random.default_rng(0).integers(0, args.codes, (args.batch, args.grid, args.grid)).astype("int32")
    results = {
        "tfp.distributions.PixelCNN": tfp_side(args, codes),
        "gated PixelCNN (argomlops)": gated_side(args, codes),
    }
    print(f"grid {args.grid}x{args.grid}, K={args.codes}, training batch {args.batch}, sampling {args.count} grids")
    for name, r in results.items():
        print(
            f"{name}: {r['params']:,} params, {r['steps_per_s']:.1f} train steps/s, sample({args.count}) "
            f"{r['sample_s']:.2f} s ({args.count / r['sample_s']:.2f} samples/s; "
            f"first call {r['first_sample_s']:.2f} s)"
        )
    ours, theirs = results["gated PixelCNN (argomlops)"], results["tfp.distributions.PixelCNN"]
    print(f"sampling speed-up: {theirs['sample_s'] / ours['sample_s']:.0f}x")


if __name__ == "__main__":
    main()
