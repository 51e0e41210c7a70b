"""The pictures of report.html: which grids of a run to show, embedded as data: URIs.

A run writes a grid every `imagesEvery` epochs; a 128-epoch run may hold 64 of each kind. The page shows
at most `MAX_GRIDS` per kind, spread evenly over the epochs, the newest always among them and shown
large; the others are thumbnails. A grid small enough (`KEEP_BYTES`, `THUMB_KEEP_BYTES` for a
thumbnail) is embedded as the PNG it is (pixel-exact); a larger one is scaled down and re-encoded as
JPEG. Measured with the demo's own grids (140-200 kB PNGs) repeated over 128 epochs: a page of about 1 MB.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass

from argomlops.trainer.storage import ArtifactStore

GRID_DIRS = {"vqvae": "reconstructions", "pixelcnn": "samples"}
"""Where each stage writes its grids (`<stage>/<dir>/epoch-NNNN.png`)."""
MAX_GRIDS = 10
KEEP_BYTES = 160_000
THUMB_KEEP_BYTES = 40_000
NEWEST_SIDE = 1024
THUMB_SIDE = 360
_EPOCH = re.compile(r"epoch-(\d+)\.png$")


@dataclass
class Grid:
    """One grid of a run, ready for an `<img>`: its epoch, data URI and pixel size."""

    stage: str
    epoch: int
    uri: str
    width: int
    height: int


def grid_paths(store: ArtifactStore, stage: str) -> list[tuple[int, str]]:
    """(epoch, store path) of every grid of `stage`, oldest first."""
    found = []
    for path in store.list(f"{stage}/{GRID_DIRS[stage]}"):
        match = _EPOCH.search(path)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def spread(items: list[tuple[int, str]], count: int = MAX_GRIDS) -> list[tuple[int, str]]:
    """At most `count` of `items`, evenly spaced, the last always kept (and the first when `count` > 1)."""
    if len(items) <= count:
        return list(items)
    if count <= 1:
        return items[-1:]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def embed(png: bytes, max_side: int, keep_bytes: int = KEEP_BYTES) -> tuple[str, int, int]:
    """A data URI of a grid and its size: the PNG itself when small, else scaled down as JPEG."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.load()
        if len(png) <= keep_bytes and max(image.size) <= max_side:
            return "data:image/png;base64," + base64.b64encode(png).decode("ascii"), image.width, image.height
        scaled = image.convert("RGB")
        scaled.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        scaled.save(out, format="JPEG", quality=85, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii"), scaled.width, scaled.height


def run_grids(store: ArtifactStore, stage: str, count: int = MAX_GRIDS) -> list[Grid]:
    """The grids of `stage` to show, oldest first; the newest (last) one at full size."""
    chosen = spread(grid_paths(store, stage), count)
    grids = []
    for i, (epoch, path) in enumerate(chosen):
        newest = i == len(chosen) - 1
        side, keep = (NEWEST_SIDE, KEEP_BYTES) if newest else (THUMB_SIDE, THUMB_KEEP_BYTES)
        uri, width, height = embed(store.read_bytes(path), side, keep)
        grids.append(Grid(stage, epoch, uri, width, height))
    return grids
