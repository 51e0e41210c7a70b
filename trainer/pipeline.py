"""The tf.data pipeline: image files to float batches, decoded once per process when they fit in memory.

`image_dataset` decodes with TensorFlow ops in parallel, pads each image to a square, resizes it and
batches; `load_images` does the same eagerly for grids. Sets whose decoded images (uint8) take at most
`MEMORY_CACHE_SET_BYTES` are decoded once and served from memory (`decoded_images`); all such sets
together are kept up to `MEMORY_CACHE_BYTES`, least recently used dropped first. Larger sets stream.

Padding is black (zeros), not edge-replicated: a constant border is trivial for the models to learn and
never invents content, while replicated edges smear streaks that look like image structure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from argomlops.errors import InputError
from argomlops.trainer import logs

if TYPE_CHECKING:
    import tensorflow as tf

MEMORY_CACHE_SET_BYTES = 1 << 30
MEMORY_CACHE_BYTES = 2 << 30


def decode_square(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """One file as (S, S, 3) uint8: decoded to RGB, padded to a black square, centred, then resized."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False, dtype=tf.uint8)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.maximum(height, width)
    # (side, side, 3): the content keeps its aspect ratio, the border is zeros.
    square = tf.image.pad_to_bounding_box(image, (side - height) // 2, (side - width) // 2, side, side)
    resized = tf.image.resize(square, [image_size, image_size], method="bilinear", antialias=True)
    return tf.ensure_shape(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8), [image_size] * 2 + [3])


def _decoded_stream(paths: Sequence[str], image_size: int, *, shuffle: bool, seed: int) -> tf.data.Dataset:
    """(S, S, 3) uint8 images decoded in parallel; files that fail to decode despite the check are dropped."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(list(paths), dtype=tf.string))
    if shuffle:
        # All the names fit in the buffer: a full shuffle costs nothing before decoding.
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda p: decode_square(p, image_size), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.ignore_errors(log_warning=True)


# (paths, sizes and mtimes, image size) -> decoded images (N, S, S, 3) uint8, most recent last.
_decoded: dict[tuple[Any, ...], tf.Tensor] = {}


def forget_decoded() -> None:
    """Drop every decoded set this process keeps (the next epoch decodes from the files again)."""
    _decoded.clear()


def decoded_images(paths: Sequence[str], image_size: int) -> tf.Tensor:
    """All images decoded once as one (N, S, S, 3) uint8 tensor, kept for later calls of this process.

    The trainer builds a fresh dataset every epoch; this keeps the decoding to the first one. Files
    changed on disk (size or mtime) are decoded again.
    """
    import tensorflow as tf

    stats = tuple((s.st_size, s.st_mtime_ns) for s in map(os.stat, paths))
    key = (tuple(paths), stats, image_size)
    if key in _decoded:
        _decoded[key] = _decoded.pop(key)  # most recently used goes last
        return _decoded[key]
    batches = list(_decoded_stream(paths, image_size, shuffle=False, seed=0).batch(256))
    images = tf.concat(batches, axis=0) if batches else tf.zeros([0, image_size, image_size, 3], tf.uint8)
    if images.shape[0] != len(paths):
        logs.log(f"data: {len(paths) - images.shape[0]} of {len(paths)} files failed to decode and were left out")
    _decoded[key] = images
    while sum(int(tf.size(t)) for t in _decoded.values()) > MEMORY_CACHE_BYTES and len(_decoded) > 1:
        _decoded.pop(next(iter(_decoded)))
    return images


def image_dataset(
    paths: Sequence[str],
    image_size: int,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    repeat: bool = False,
    drop_remainder: bool = True,
    in_memory: bool | None = None,
) -> tf.data.Dataset:
    """Batches of float32 (B, S, S, 3) in [0, 1], prefetched; the same seed gives the same order.

    Sets whose decoded size is at most `MEMORY_CACHE_SET_BYTES` (or any set with `in_memory=True`;
    none with False) are decoded once per process (`decoded_images`) and batches are gathered from
    memory in a shuffled order of all indices. Larger sets shuffle all the file names, then decode in
    parallel (in order, so the seed decides). Both shuffle the whole set, which costs nothing as
    indices or names: no buffer of decoded images (which would stall every epoch's start while it
    fills, and shuffle only within it) is needed, so there is no such setting.
    """
    import tensorflow as tf

    if not paths:
        raise InputError("no images to build a dataset from")
    autotune = tf.data.AUTOTUNE
    if in_memory is None:
        in_memory = len(paths) * image_size * image_size * 3 <= MEMORY_CACHE_SET_BYTES
    if in_memory:
        images = decoded_images(paths, image_size)
        dataset = tf.data.Dataset.range(int(images.shape[0]))
        if shuffle:
            dataset = dataset.shuffle(int(images.shape[0]), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        # (B,) indices -> (B, S, S, 3): one gather per batch, no per-image work.
        dataset = dataset.map(lambda index: tf.gather(images, index), num_parallel_calls=autotune)
    else:
        dataset = _decoded_stream(paths, image_size, shuffle=shuffle, seed=seed)
        if repeat:
            dataset = dataset.repeat()
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=autotune)
    # Casting whole batches is cheaper than casting image by image.
    dataset = dataset.map(lambda batch: tf.cast(batch, tf.float32) / 255.0, num_parallel_calls=autotune)
    return dataset.prefetch(autotune)


def load_images(paths: Sequence[str], image_size: int) -> np.ndarray:
    """(N, S, S, 3) float32 in [0, 1], in the order given, preprocessed exactly as for training."""
    if not paths:
        return np.zeros((0, image_size, image_size, 3), np.float32)
    images: np.ndarray = decoded_images(paths, image_size).numpy().astype(np.float32) / 255.0
    return images
