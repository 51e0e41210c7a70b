"""`builtin:figures`: thousands of procedurally drawn human figures in five poses, one pose tag per image.

Nothing is downloaded: `figures_draw` paints each figure from a seeded random generator, so every machine
builds byte-identical PNGs, once per image size, into `<cache>/figures/<version>/<size>px/` beside a
`metadata.jsonl` (the format of a user's own metadata). Each image carries exactly one pose tag (`standing`,
`sitting`, `walking`, `arms-raised`, `lying`), the way the figure faces (`facing-left`, `facing-right`,
`facing-front`; none for `lying`), what it wears (`trousers`, `skirt`, `dress`) and `cropped` when part of
the figure is outside the frame, so `includeTags: [standing]` and `conditionOnTags` work as on any data.

600 images per pose (3000): enough for a small pose classifier to reach a high held-out accuracy and for
a validation split of about 60 per pose, few enough to build in seconds at 64 px and to train on for a
few epochs within the demo's minutes on two CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from argomlops.trainer.builtin_sets import METADATA_NAME, build_once
from argomlops.trainer.figures_pose import POSES
from argomlops.trainer.storage import cache_root

# Bump when the drawing changes, so that caches built by older versions are not reused.
FIGURES_VERSION = "v1"
PER_POSE = 600
SEED = 20261201
# Drawing is mostly Python, so processes share the work; each draws at least this many images.
_PER_WORKER = 50
_MAX_WORKERS = 16


def figures_dir(size: int) -> Path:
    """Where the figures of this version drawn at `size` pixels live: `<cache>/figures/<version>/<size>px/`."""
    return cache_root() / "figures" / FIGURES_VERSION / f"{size}px"


def _write(target: Path, size: int, seed: int, index: int) -> dict[str, object]:
    """Draw image `index`, save it as PNG in `target`; returns its metadata row."""
    from PIL import Image

    from argomlops.trainer.figures_draw import draw_figure

    drawn = draw_figure(index, size, seed)
    file = f"{drawn.tags[0]}-{index // len(POSES):04d}.png"
    Image.fromarray(drawn.image).save(target / file, compress_level=6)
    return {"file": file, "tags": drawn.tags}


def _workers(count: int) -> int:
    """How many processes draw `count` images: one per core this process may use, one for a few images."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, _MAX_WORKERS, count // _PER_WORKER))


def _draw_stripe(target: Path, size: int, seed: int, start: int, count: int, step: int) -> list[dict[str, object]]:
    """The metadata rows of images start, start + step, ... below count, each drawn and saved into `target`."""
    return [_write(target, size, seed, index) for index in range(start, count, step)]


def _draw_in_processes(target: Path, size: int, seed: int, count: int, workers: int) -> list[dict[str, object]]:
    """The rows of all `count` images in index order, drawn by `workers` fresh interpreters side by side.

    Fresh interpreters (`python -m` this module), not multiprocessing: spawning re-runs the caller's main
    script (which fails where it has no `__main__` guard), and forking would copy TensorFlow's threads.
    """
    import argomlops

    path = os.pathsep.join([str(Path(argomlops.__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep)}
    args = [str(target), str(size), str(seed)]
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "argomlops.trainer.figures_data", *args, str(start), str(count), str(workers)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        for start in range(workers)
    ]
    errors = [p.communicate()[1].decode(errors="replace").strip() for p in running]
    failed = [f"worker {k}: {e[-400:]}" for k, (p, e) in enumerate(zip(running, errors, strict=True)) if p.returncode]
    if failed:
        raise RuntimeError("drawing the figures failed: " + "; ".join(failed))
    stripes = []
    for start in range(workers):
        rows_file = target / f".rows-{start}.jsonl"
        stripes.append([json.loads(line) for line in rows_file.read_text().splitlines()])
        rows_file.unlink()
    # Stripe k holds images k, k + workers, ...: interleave them back into index order.
    return [stripes[i % workers][i // workers] for i in range(count)]


def _build(target: Path, size: int, per_pose: int, seed: int, workers: int | None = None) -> int:
    """Write every figure as PNG and the metadata (last) into `target`; returns the number of images."""
    count = per_pose * len(POSES)
    workers = workers or _workers(count)
    if workers > 1:
        rows = _draw_in_processes(target, size, seed, count, workers)
    else:
        rows = _draw_stripe(target, size, seed, 0, count, 1)
    (target / METADATA_NAME).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return count


def ensure_figures(
    size: int,
    root: Path | None = None,
    log: Callable[[str], None] | None = None,
    *,
    per_pose: int = PER_POSE,
    seed: int = SEED,
) -> Path:
    """The folder of the figures drawn at `size` px, built first if absent; safe when several processes build.

    `root`, `per_pose` and `seed` are for tests; the cache folder always holds the default set.
    """
    root = Path(root) if root is not None else figures_dir(size)
    if log is not None and not (root / METADATA_NAME).is_file():
        log(f"data: drawing the figures set at {size} px into {root} (once per size)")
    count = build_once(root, lambda folder: _build(folder, size, per_pose, seed))
    if count is not None and log is not None:
        log(f"data: drew {count} figures ({per_pose} per pose)")
    return root


def _worker(argv: list[str]) -> None:
    """`python -m argomlops.trainer.figures_data TARGET SIZE SEED START COUNT STEP`: one stripe of a build."""
    target, size, seed, start, count, step = Path(argv[0]), *(int(a) for a in argv[1:])
    rows = _draw_stripe(target, size, seed, start, count, step)
    (target / f".rows-{start}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    _worker(sys.argv[1:])
