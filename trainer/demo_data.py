"""`builtin:demo`: a few hundred square crops of the colour photos that ship inside scikit-image.

Nothing is downloaded: scikit-image carries these photos (CC0 / public domain) in its wheel. The crops
are cut at random positions and scales with a fixed seed, so every machine builds byte-identical PNGs,
once, into `<cache>/demo/<version>/` beside a `metadata.jsonl` whose tags name the source photo, its
kind and whether the crop was mirrored (so `includeTags: [chelsea]` or `excludeTags: [flipped]` work).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from argomlops.trainer.builtin_sets import METADATA_NAME, build_once
from argomlops.trainer.storage import cache_root

# Bump when the crops change, so that caches built by older versions are not reused.
DEMO_VERSION = "v1"
CROPS_PER_PHOTO = 40
STORED_SIZE = 128
SEED = 20261127
# Tag of each photo: its name (the scikit-image loader) and what it shows.
PHOTOS: dict[str, str] = {
    "astronaut": "person",
    "chelsea": "animal",
    "coffee": "object",
    "rocket": "object",
    "stereo_motorcycle": "object",
    "hubble_deep_field": "space",
    "retina": "medical",
    "immunohistochemistry": "medical",
}
# A crop's side as a share of the photo's shorter side: small enough for variety, large enough to
# keep recognisable structure at 64 px.
_SCALE_RANGE = (0.3, 0.85)


def demo_dir() -> Path:
    """Where the demo set of this version lives: `<cache>/demo/<version>/`."""
    return cache_root() / "demo" / DEMO_VERSION


def _photo(name: str) -> np.ndarray:
    """One scikit-image photo as (H, W, 3) uint8."""
    from skimage import data

    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    return np.asarray(image[..., :3], dtype=np.uint8)


def _crops(name: str, index: int) -> list[tuple[np.ndarray, bool]]:
    """CROPS_PER_PHOTO (crop, flipped) pairs of one photo, each STORED_SIZE square, seeded per photo."""
    from PIL import Image

    photo = _photo(name)
    height, width = photo.shape[:2]
    rng = np.random.default_rng([SEED, index])
    crops = []
    for _ in range(CROPS_PER_PHOTO):
        side = int(rng.uniform(*_SCALE_RANGE) * min(height, width))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        flipped = bool(rng.random() < 0.5)
        crop = photo[top : top + side, left : left + side]
        if flipped:
            crop = crop[:, ::-1]
        resized = Image.fromarray(np.ascontiguousarray(crop)).resize(
            (STORED_SIZE, STORED_SIZE), Image.Resampling.LANCZOS
        )
        crops.append((np.asarray(resized), flipped))
    return crops


def _build(target: Path) -> int:
    """Write every crop as PNG and the metadata (last) into `target`; returns the number of images."""
    from PIL import Image

    rows = []
    for index, (name, kind) in enumerate(PHOTOS.items()):
        tag = name.removeprefix("stereo_")
        for number, (crop, flipped) in enumerate(_crops(name, index)):
            file = f"{tag}-{number:03d}.png"
            Image.fromarray(crop).save(target / file, compress_level=3)
            rows.append({"file": file, "tags": [tag, kind, *(["flipped"] if flipped else [])]})
    (target / METADATA_NAME).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return len(rows)


def ensure_demo(root: Path | None = None, log: Callable[[str], None] | None = None) -> Path:
    """The folder of the demo set, built first if absent; safe when several processes build at once."""
    root = Path(root) if root is not None else demo_dir()
    count = build_once(root, _build)
    if count is not None and log is not None:
        log(f"data: built the demo set ({count} crops of {len(PHOTOS)} scikit-image photos) in {root}")
    return root
