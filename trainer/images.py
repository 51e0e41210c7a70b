"""PNG grids of images: reconstructions beside their inputs, and samples."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def grid(images: Any, columns: int, gap: int = 2, background: float = 1.0) -> np.ndarray:
    """Tile `(N, S, S, 3)` images in [0, 1] into one `(H, W, 3)` uint8 array, `columns` per row."""
    images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    canvas = np.full(
        (rows * (height + gap) + gap, columns * (width + gap) + gap, channels), background, dtype=np.float32
    )
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = gap + r * (height + gap), gap + c * (width + gap)
        canvas[top : top + height, left : left + width] = image
    return (canvas * 255.0 + 0.5).astype(np.uint8)


def pairs_grid(inputs: Any, outputs: Any, pairs_per_row: int = 4) -> np.ndarray:
    """Inputs and outputs interleaved: each input directly left of its reconstruction."""
    inputs, outputs = np.asarray(inputs), np.asarray(outputs)
    interleaved = np.stack([inputs, outputs], axis=1).reshape(-1, *inputs.shape[1:])  # (2N, S, S, 3)
    return grid(interleaved, columns=2 * pairs_per_row)


def to_png(array: np.ndarray, min_side: int = 256) -> bytes:
    """Encode a uint8 `(H, W, 3)` array as PNG, scaled up by a whole factor so small images stay visible."""
    image = Image.fromarray(array)
    factor = max(1, -(-min_side // max(1, min(image.size))))
    if factor > 1:
        # Nearest neighbour keeps the pixels of 16-64 px images crisp instead of blurring them.
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def reconstruction_png(inputs: Any, outputs: Any, pairs_per_row: int = 4) -> bytes:
    """PNG of inputs beside their reconstructions."""
    return to_png(pairs_grid(inputs, outputs, pairs_per_row))


def samples_png(images: Any, columns: int = 4) -> bytes:
    """PNG of a grid of generated images."""
    return to_png(grid(images, columns))
