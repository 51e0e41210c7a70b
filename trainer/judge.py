"""The judge of generated images: a small CNN classifier trained on the run's own images and tags.

`load_or_train_judge(config, store, selection)` returns a `Judge`: a Keras 3 CNN that downscales its
input to at most `MAX_SIDE` px inside the model, ends in a `FEATURE_WIDTH`-wide feature layer (the
space in which `judge_metrics` measures Fréchet distance and precision / recall), and a multi-label
sigmoid head over the judged tags. It is trained on the run's training split for a fixed budget of
`TRAIN_STEPS` steps, seeded by `training.seed`, and its accuracy on the validation split is the
ceiling that generated images are held to.

Which tags are judged:
- a conditional prior: its `models.pixelcnn.conditionOnTags`, the tags it can be asked for;
- an unconditional one: the metadata tags carried by at least `MIN_TAG_SHARE` and at most
  `MAX_TAG_SHARE` of the training images (a tag on nearly every image says nothing about one), the
  `MAX_TAGS` most common;
- no such tag: no head is trained, the classifier metrics are unavailable, and the features are those of
  the untrained (seeded) network: random features still separate sets, but less sharply.

Tags are exclusive when there are at least two and no training image carries two of them; then "image
classified as t" means its highest probability among the judged tags is t's, otherwise that p(t) > 0.5.

The model is cached as `<run>/evaluation/classifier.keras` beside `classifier.json` (tags, sizes,
held-out accuracy, and a fingerprint of the image files, their tags, the seed and `JUDGE_VERSION`);
the JSON is written last, and a judge is reused only when its fingerprint matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from argomlops.config import RunConfig
from argomlops.errors import InputError
from argomlops.trainer.codes import tag_vectors
from argomlops.trainer.data import ImageSelection
from argomlops.trainer.logs import log
from argomlops.trainer.pipeline import image_dataset
from argomlops.trainer.storage import ArtifactStore

JUDGE_DIR = "evaluation"
CLASSIFIER_MODEL = f"{JUDGE_DIR}/classifier.keras"
CLASSIFIER_META = f"{JUDGE_DIR}/classifier.json"
# Bump when the architecture, the budget or the preprocessing change: cached judges are then retrained.
JUDGE_VERSION = 2
MAX_SIDE = 64
# Four levels of a 3x3 convolution and a stride-2 one, trained on mirrored and shifted images. Held-out
# accuracy on builtin:figures at 64 px (the five poses), same seed: 0.887 with stride-2 convolutions
# alone and 300 steps, 0.940 with 1000 steps, 0.974 adding the augmentation, 0.997 with the extra
# convolution and 600 steps (bench/README.md, "The judge").
FILTERS = (16, 32, 64, 64)
FEATURE_WIDTH = 48
TRAIN_STEPS = 600
SHIFT = 0.08
"""Random translation during training, as a share of the side: framing varies in every data set."""
BATCH_SIZE = 32
LEARNING_RATE = 2e-3
MIN_TAG_SHARE = 0.05
MAX_TAG_SHARE = 0.95
MAX_TAGS = 16
_PREDICT_BATCH = 128


@dataclass
class Judge:
    """The classifier of a run and what it was trained on.

    Attributes:
        model: (B, S, S, 3) images in [0, 1] -> {"features": (B, F)} plus "probabilities": (B, T) with tags.
        tags: the judged tags (empty: features only).
        meta: what classifier.json holds (rule, sizes, held-out accuracy, fingerprint).
        reused: whether the cached judge was loaded instead of trained.
    """

    model: keras.Model
    tags: list[str]
    meta: dict[str, Any]
    reused: bool = False

    @property
    def exclusive(self) -> bool:
        """Whether the judged tags exclude each other (then argmax decides)."""
        return bool(self.meta.get("exclusive"))

    def score(self, images: Any, downscaled: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, T), features (N, F)) of (N, S, S, 3) float images in [0, 1].

        Args:
            downscaled: the images are already at the judge's side (`load_small`): skip the resize.
        """
        model = self.model.get_layer("judge_body") if downscaled else self.model
        images = np.asarray(images, np.float32)
        probabilities, features = [], []
        for start in range(0, len(images), _PREDICT_BATCH):
            out = model(images[start : start + _PREDICT_BATCH], training=False)
            features.append(np.asarray(out["features"], np.float64))
            if self.tags:
                probabilities.append(np.asarray(out["probabilities"], np.float64))
        feats = np.concatenate(features) if features else np.zeros((0, FEATURE_WIDTH))
        probs = np.concatenate(probabilities) if probabilities else np.zeros((len(feats), len(self.tags)))
        return probs, feats


def judged_tags(config: RunConfig, selection: ImageSelection) -> tuple[list[str], str]:
    """(tags, the rule that chose them) for the run (see the module docstring)."""
    conditioned = list(config.models.pixelcnn.condition_on_tags)
    if conditioned:
        return conditioned, "conditionOnTags of the prior"
    counts = Counter(tag for path in selection.train for tag in set(selection.tags.get(path, [])))
    total = max(1, len(selection.train))
    useful = [t for t, n in counts.items() if MIN_TAG_SHARE <= n / total <= MAX_TAG_SHARE]
    chosen = sorted(sorted(useful), key=lambda t: -counts[t])[:MAX_TAGS]
    rule = f"metadata tags on {MIN_TAG_SHARE:.0%}..{MAX_TAG_SHARE:.0%} of training images (at most {MAX_TAGS})"
    return chosen, rule


def is_exclusive(targets: np.ndarray) -> bool:
    """Whether no row of the (N, T) multi-hot `targets` carries two tags (and there are at least two)."""
    return targets.shape[1] >= 2 and bool((targets.sum(axis=1) <= 1).all())


def classified_as(probabilities: np.ndarray, exclusive: bool) -> np.ndarray:
    """(N, T) booleans: which tags the judge gives each image (argmax when exclusive, else p > 0.5)."""
    if not exclusive:
        return probabilities > 0.5
    return np.eye(probabilities.shape[1], dtype=bool)[probabilities.argmax(axis=1)]


def tag_accuracy(
    probabilities: np.ndarray, targets: np.ndarray, tags: list[str], exclusive: bool, keep_absent: bool = True
) -> dict[str, Any]:
    """{"per_tag": {t: share of the images meant to show t that the judge classifies as t}, "mean"}.

    A tag no image is meant to show gets None (or is left out, with `keep_absent=False`); "mean"
    averages the others (None when there are none).
    """
    given = classified_as(probabilities, exclusive)
    per_tag: dict[str, float | None] = {}
    for i, tag in enumerate(tags):
        meant = targets[:, i] > 0
        if meant.any() or keep_absent:
            per_tag[tag] = float(given[meant, i].mean()) if meant.any() else None
    known = [v for v in per_tag.values() if v is not None]
    return {"per_tag": per_tag, "mean": float(np.mean(known)) if known else None}


def judge_side(image_size: int) -> int:
    """The side the judge looks at: the run's image size, at most MAX_SIDE."""
    return min(image_size, MAX_SIDE)


@contextmanager
def _float32() -> Iterator[None]:
    # A mixed_float16 run must not give its judge float16 layers.
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _downscale(image_size: int) -> keras.layers.Layer | None:
    side = judge_side(image_size)
    return keras.layers.Resizing(side, side, antialias=True, name="downscale") if side < image_size else None


def build_judge(image_size: int, tags: int, seed: int) -> tuple[keras.Model, keras.Model]:
    """(the judge on (S, S, 3) images, its body on downscaled images whose probabilities are trained)."""
    keras.utils.set_random_seed(seed)
    side = judge_side(image_size)
    with _float32():
        small = keras.Input((side, side, 3), name="images")
        x = keras.layers.Rescaling(2.0, offset=-1.0)(small)
        # Mirrored and shifted copies (training only): a pose is the same pose facing the other way or
        # framed elsewhere, and the judge must not learn where figures usually stand.
        x = keras.layers.RandomFlip("horizontal", seed=seed, name="mirror")(x)
        x = keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode="nearest", seed=seed, name="shift")(x)
        # Then a flatten, not a global average: the features keep where things are (a pose's outline).
        for n, filters in enumerate(FILTERS):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{n}a")(x)
            x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"conv{n}")(x)
        features = keras.layers.Dense(FEATURE_WIDTH, name="features")(keras.layers.Flatten()(x))
        outputs = {"features": features}
        if tags:
            hidden = keras.layers.Activation("relu")(features)
            outputs["probabilities"] = keras.layers.Dense(tags, activation="sigmoid", name="probabilities")(hidden)
        body = keras.Model(small, outputs, name="judge_body")
        full = keras.Input((image_size, image_size, 3), name="images")
        resize = _downscale(image_size)
        judge = keras.Model(full, body(resize(full) if resize is not None else full), name="judge")
    return judge, body


def downscale_images(images: Any, image_size: int) -> np.ndarray:
    """(N, s, s, 3) float32: (N, S, S, 3) images resized to the judge's side as its model does."""
    resize = _downscale(image_size)
    images = np.asarray(images, np.float32)
    return images if resize is None else np.asarray(resize(images), np.float32)


def load_small(paths: list[str], image_size: int) -> np.ndarray:
    """(N, s, s, 3) float32 images preprocessed as for training, then downscaled as the judge does."""
    side = judge_side(image_size)
    if not paths:
        return np.zeros((0, side, side, 3), np.float32)
    batches = image_dataset(paths, image_size, _PREDICT_BATCH, shuffle=False, seed=0, drop_remainder=False)
    images = np.concatenate([downscale_images(batch, image_size) for batch in batches])
    if len(images) != len(paths):
        raise InputError(f"data: {len(paths) - len(images)} of {len(paths)} images failed to decode for the judge")
    return images


def fingerprint(selection: ImageSelection, tags: list[str], image_size: int, seed: int) -> str:
    """SHA-256 of what a judge is made from: each file (relative name, size, judged tags), sizes, seed."""
    paths = selection.all
    root = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0]) if paths else ""
    split = set(selection.validation)
    files = [
        [os.path.relpath(p, root), os.path.getsize(p), p in split, sorted(set(selection.tags.get(p, [])) & set(tags))]
        for p in paths
    ]
    payload = {"version": JUDGE_VERSION, "tags": tags, "image_size": image_size, "seed": seed, "files": files}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def _train(body: keras.Model, images: np.ndarray, targets: np.ndarray, seed: int) -> None:
    import tensorflow as tf

    trainable = keras.Model(body.input, body.output["probabilities"])
    trainable.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="binary_crossentropy")
    dataset = tf.data.Dataset.from_tensor_slices((images, targets.astype(np.float32)))
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    batches = dataset.batch(min(BATCH_SIZE, len(images)), drop_remainder=True)
    trainable.fit(batches, epochs=1, steps_per_epoch=TRAIN_STEPS, shuffle=False, verbose=0)


def _save(store: ArtifactStore, judge: keras.Model, meta: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="argomlops-judge-") as temp:
        local = Path(temp) / "classifier.keras"
        judge.save(local)
        store.upload_file(local, CLASSIFIER_MODEL)
    store.write_json(CLASSIFIER_META, meta)  # last: a judge without it is incomplete


def _cached(store: ArtifactStore, expected: str) -> Judge | None:
    if not (store.exists(CLASSIFIER_META) and store.exists(CLASSIFIER_MODEL)):
        return None
    meta: dict[str, Any] = store.read_json(CLASSIFIER_META)
    if meta.get("fingerprint") != expected:
        log("evaluate: the cached judge was made from other images or settings; training a new one")
        return None
    from argomlops.trainer.checkpoint import load_keras

    log(f"evaluate: reusing the judge {store.uri}/{CLASSIFIER_MODEL}")
    return Judge(load_keras(store, CLASSIFIER_MODEL), list(meta["tags"]), meta, reused=True)


def load_or_train_judge(config: RunConfig, store: ArtifactStore, selection: ImageSelection) -> Judge:
    """The run's judge: the cached one when its fingerprint matches, else one trained now and cached."""
    size, seed = config.data.image_size, config.training.seed
    tags, rule = judged_tags(config, selection)
    expected = fingerprint(selection, tags, size, seed)
    cached = _cached(store, expected)
    if cached is not None:
        return cached
    started = time.monotonic()
    judge_model, body = build_judge(size, len(tags), seed)
    train_targets = tag_vectors(selection.train, selection.tags, tags)
    trained = bool(tags) and bool(train_targets.any())
    if trained:
        _train(body, load_small(selection.train, size), train_targets, seed)
    judge = Judge(judge_model, tags, {"exclusive": is_exclusive(train_targets)})
    held_out = None
    if trained and selection.validation:
        probabilities, _ = judge.score(load_small(selection.validation, size), downscaled=True)
        validation_targets = tag_vectors(selection.validation, selection.tags, tags)
        held_out = tag_accuracy(probabilities, validation_targets, tags, judge.exclusive)
    judge.meta.update(
        tags=tags,
        rule=rule,
        trained=trained,
        image_size=size,
        judge_size=judge_side(size),
        feature_width=FEATURE_WIDTH,
        train_steps=TRAIN_STEPS if trained else 0,
        train_images=len(selection.train),
        validation_images=len(selection.validation),
        held_out_accuracy=held_out,
        train_seconds=round(time.monotonic() - started, 2),
        fingerprint=expected,
        version=JUDGE_VERSION,
    )
    _save(store, judge_model, judge.meta)
    what = f"trained the judge on {len(selection.train)} images, tags {tags}" if trained else "built an untrained judge"
    log(f"evaluate: {what} ({judge.meta['train_seconds']} s)")
    return judge
