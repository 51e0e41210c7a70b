"""How many images per second the data pipeline delivers on the demo set (the training loop's ceiling).

Run: .venv/bin/python bench/data_pipeline.py [--sizes 64 128] [--batch 32] [--seconds 3] [--repeats 3]

Three figures per image size (median of --repeats), each a fresh dataset as the trainer builds one per epoch:
- first epoch: decode every file (parallel tf.data map) and keep the decoded set in memory;
- later epochs: batches gathered from the decoded set in memory (sets up to 1 GiB decoded);
- streaming: the path of larger sets, decoding every image every epoch (memory cache turned off).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from argomlops.config import DataConfig
from argomlops.trainer import data, pipeline


def _rate(
    paths: list[str], size: int, batch: int, seconds: float, *, epoch_only: bool, in_memory: bool | None = None
) -> float:
    """Images per second over one epoch (`epoch_only`) or a repeated stream for about `seconds`."""
    start = time.perf_counter()
    dataset = pipeline.image_dataset(
        paths, size, batch, shuffle=True, seed=0, repeat=not epoch_only, in_memory=in_memory
    )
    images = 0
    for batch_images in dataset:
        images += int(batch_images.shape[0])
        if not epoch_only and time.perf_counter() - start > seconds:
            break
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each repeated-stream measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per figure; the median is printed")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    selection = data.select_images(DataConfig(source="builtin:demo", validation_fraction=0.0))
    paths = selection.train
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, TF {tf.__version__}")
    print(f"demo set: {len(paths)} images (128x128 PNG), batch {args.batch}")
    pipeline.load_images(paths[:8], 16)  # warm-up: TensorFlow's first graph builds are not the pipeline's cost
    for size in args.sizes:
        firsts = []
        for _ in range(args.repeats):
            pipeline.forget_decoded()
            firsts.append(_rate(paths, size, args.batch, args.seconds, epoch_only=True))
        first = statistics.median(firsts)
        later = statistics.median(
            _rate(paths, size, args.batch, args.seconds, epoch_only=False) for _ in range(args.repeats)
        )
        streaming = statistics.median(
            _rate(paths, size, args.batch, args.seconds, epoch_only=False, in_memory=False) for _ in range(args.repeats)
        )
        print(
            f"{size}x{size}: first epoch {first:8.0f} img/s | later epochs {later:8.0f} img/s | "
            f"streaming {streaming:8.0f} img/s"
        )


if __name__ == "__main__":
    main()
