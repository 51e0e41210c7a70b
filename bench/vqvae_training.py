"""VQ-VAE training speed: the stage runner's loop against a plain `model.fit` of the same network.

A third figure, `loop`, is the VQ-VAE's compiled train step in a bare Python loop: the difference
between it and `runner` is what the runner's bookkeeping costs.

Both train the same VQ-VAE (from a run config, the quickstart's by default) on the same tf.data
pipeline of the built-in demo set. The runner is the real thing (`run_stage` into a temp run folder:
metrics, TensorBoard, checkpoints every epoch); `fit` runs Keras's own train step on the same
functional model, with only `compute_loss` (MSE + the quantizer's loss) supplied. The first epoch (tracing, decoding,
XLA compilation) is left out of both figures. Prints one JSON line.

    .venv/bin/python bench/vqvae_training.py                      # CPU, quickstart shape
    python bench/vqvae_training.py --mixed-precision --jit-compile --image-size 128 --batch 64   # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from argomlops.config import load_config
from argomlops.trainer.data import select_images
from argomlops.trainer.pipeline import image_dataset
from argomlops.trainer.run import open_run
from argomlops.trainer.stage import run_stage
from argomlops.trainer.steps import make_optimizer, train_step
from argomlops.trainer.vqvae import build_vqvae
from argomlops.trainer.vqvae_stage import vqvae_metrics, vqvae_parts

ROOT = Path(__file__).resolve().parent.parent


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples/quickstart.yaml"), help="run config for the shape")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs, the first is warm-up")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--only", choices=["runner", "fit", "loop"], help="measure only this one")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating which goes first; medians")
    return parser.parse_args()


def _config(args: argparse.Namespace, artifacts: str) -> Any:
    return load_config(
        args.config,
        [
            f"artifacts={artifacts}",
            "stages=[vqvae]",
            f"data.imageSize={args.image_size}",
            f"training.mixedPrecision={str(args.mixed_precision).lower()}",
            f"training.jitCompile={str(args.jit_compile).lower()}",
            f"training.vqvae.batchSize={args.batch}",
            f"training.vqvae.stepsPerEpoch={args.steps}",
            f"training.vqvae.epochs={args.epochs}",
            "training.vqvae.imagesEvery=0",
        ],
    )


def runner_img_per_s(config: Any, train: list[str], validation: list[str], run_id: str) -> float:
    """Training images per second of the stage runner, epochs 2.. (from its own metrics.jsonl)."""
    run = open_run(config, run_id=run_id)
    run_stage(run, "vqvae", config.training.vqvae, lambda: vqvae_parts(config, train, validation))
    records = [json.loads(line) for line in run.store.read_text("vqvae/metrics.jsonl").splitlines()]
    later = records[1:]
    return sum(r["img_per_s"] for r in later) / len(later)


def loop_img_per_s(config: Any, train: list[str]) -> float:
    """Images per second of the same compiled train step in a bare Python loop (no runner around it)."""
    settings = config.training.vqvae
    model = build_vqvae(config.models.vqvae, config.data.image_size, seed=config.training.seed)
    optimizer = make_optimizer(settings.learning_rate)
    optimizer.build(model.trainable_variables)
    step = tf.function(train_step(model, optimizer, vqvae_metrics(model)), jit_compile=config.training.jit_compile)
    times = []
    for epoch in range(settings.epochs):
        data = image_dataset(train, config.data.image_size, settings.batch_size, shuffle=True, seed=epoch, repeat=True)
        started = time.perf_counter()
        for batch in data.take(settings.steps_per_epoch):
            out = step(batch)
        float(out["loss"])  # wait for the device
        times.append(time.perf_counter() - started)
    return settings.steps_per_epoch * settings.batch_size * (settings.epochs - 1) / sum(times[1:])


class _FitVQVAE(keras.Model):
    """The VQ-VAE for `fit`: Keras's own train_step; only the loss is ours (MSE + the quantizer's loss)."""

    def __init__(self, net: keras.Model) -> None:
        super().__init__(name="fit_vqvae")
        self.net = net

    def call(self, images: Any, training: bool = False) -> Any:
        return self.net(images, training=training)

    def compute_loss(
        self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True
    ) -> Any:
        return keras.ops.mean(keras.ops.square(y_pred["reconstruction"] - x)) + y_pred["vq_loss"]


class _EpochTimes(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.times.append(time.perf_counter() - self.started)


def fit_img_per_s(config: Any, train: list[str]) -> float:
    """Training images per second of `model.fit` on the same network and data, epochs 2.."""
    settings = config.training.vqvae
    model = _FitVQVAE(build_vqvae(config.models.vqvae, config.data.image_size, seed=config.training.seed))
    # The same optimizer as the runner's (loss scaling under the mixed policy `main` sets).
    model.compile(optimizer=make_optimizer(settings.learning_rate), jit_compile=config.training.jit_compile)
    data = image_dataset(train, config.data.image_size, settings.batch_size, shuffle=True, seed=0, repeat=True)
    timer = _EpochTimes()
    model.fit(data, epochs=settings.epochs, steps_per_epoch=settings.steps_per_epoch, verbose=0, callbacks=[timer])
    later = timer.times[1:]
    return settings.steps_per_epoch * settings.batch_size * len(later) / sum(later)


def main() -> int:
    args = _args()
    with tempfile.TemporaryDirectory(prefix="argomlops-bench-") as temp:
        config = _config(args, temp)
        if config.training.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        selection = select_images(config.data, log=lambda _: None)
        result: dict[str, Any] = {
            "image_size": args.image_size,
            "batch": args.batch,
            "steps_per_epoch": args.steps,
            "epochs_timed": args.epochs - 1,
            "mixed_precision": args.mixed_precision,
            "jit_compile": args.jit_compile,
            "device": [d.name for d in tf.config.list_physical_devices("GPU")] or "cpu",
            "cpus": os.cpu_count(),
        }
        measures = {
            "runner": lambda n: runner_img_per_s(config, selection.train, selection.validation, f"bench-{n}"),
            "fit": lambda n: fit_img_per_s(config, selection.train),
            "loop": lambda n: loop_img_per_s(config, selection.train),
        }
        names = [args.only] if args.only else ["runner", "fit", "loop"]
        seen: dict[str, list[float]] = {name: [] for name in names}
        # Other jobs on a shared machine come and go: alternate the order and report medians.
        for n in range(args.rounds):
            for name in names if n % 2 == 0 else names[::-1]:
                seen[name].append(measures[name](n))
        for name, values in seen.items():
            result[f"{name}_img_per_s"] = round(statistics.median(values), 1)
            result[f"{name}_rounds"] = [round(v, 1) for v in values]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
