"""Sampling speed: the compiled PixelCNN sampler vs a per-position `model.predict` loop, same model and grid.

Both draw the same codes for the same seed (checked here too). The model is the default `models.pixelcnn`
shape (or what the flags say) over a K-code codebook; its weights do not change the cost of sampling, so
it is not trained.

    .venv/bin/python bench/pixelcnn_sampling.py --grid 16 --count 8 [--no-jit]
    .venv/bin/python bench/pixelcnn_sampling.py --grid 80 --k 2 --codes 512 --filters 128 --layers 12 \
        --count 4 --skip-naive [--dilations 1 2 4 8]     # the journal's 640 px prior (examples/fafa.yaml)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from argomlops.config import PixelCNNConfig
from argomlops.trainer.pixelcnn import build_pixelcnn
from argomlops.trainer.sampler import Sampler, reference_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=16, help="side of the code grid")
    parser.add_argument("--count", type=int, default=8, help="grids drawn at once")
    parser.add_argument("--codes", type=int, default=128, help="codebook size K")
    parser.add_argument("--k", type=int, default=1, help="codes per position")
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dilations", type=int, nargs="+", default=[1], help="models.pixelcnn.dilations")
    parser.add_argument("--no-jit", action="store_true", help="time the plain tf.function graph, without XLA")
    parser.add_argument("--skip-naive", action="store_true", help="only time the compiled sampler")
    args = parser.parse_args()

    config = PixelCNNConfig(filters=args.filters, layers=args.layers, dilations=args.dilations)
    model = build_pixelcnn(config, (args.grid, args.grid), args.codes, args.k)
    print(f"model: {model.count_params():,} parameters, grid {args.grid}x{args.grid}x{args.k}, K={args.codes}")
    sampler = Sampler(model, jit_compile=not args.no_jit)

    start = time.perf_counter()
    sampler.sample(args.count, seed=1)
    print(f"compiled sampler, first call (tracing included): {time.perf_counter() - start:.2f} s")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fast = sampler.sample(args.count, seed=0)
        times.append(time.perf_counter() - start)
    compiled = min(times)
    print(f"compiled sampler: {compiled:.3f} s for {args.count} grids = {args.count / compiled:.2f} samples/s")
    if args.skip_naive:
        return

    start = time.perf_counter()
    slow = reference_sample(model, args.count, seed=0, call=lambda x: model.predict(x, verbose=0))
    naive = time.perf_counter() - start
    print(f"per-position model.predict loop: {naive:.1f} s = {args.count / naive:.3f} samples/s")
    print(f"speed-up: {naive / compiled:.0f}x; same codes: {bool(np.array_equal(fast, slow))}")


if __name__ == "__main__":
    main()
