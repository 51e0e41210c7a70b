"""Stage 2: train the gated PixelCNN prior on the VQ-VAE's codes with the shared stage runner.

The stage reads the run's trained VQ-VAE (`vqvae/model.keras`, or the parent run's when this run has
none), encodes the data set once (`codes.py`), and trains the prior on the stored code grids. Per step it
reports loss (cross-entropy in nats), bits_per_code and accuracy; the runner turns them into
train_*/val_* metrics in metrics.jsonl and TensorBoard. Every `imagesEvery` epochs (default: only at
the end) `pixelcnn/samples/epoch-NNNN.png` shows `sampleCount` code grids drawn by the compiled sampler
and decoded by the VQ-VAE; a conditional prior's samples cycle through its tags, one tag per column.
When the stage has finished (or was already done without an `evaluation.json`), the judge evaluates
`evaluateCount` generated images (`evaluate.py`; 0 = not at all). A judge that cannot be made is
logged and recorded in provenance.json, not a failed run: the prior is trained by then.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from argomlops.config import RunConfig
from argomlops.errors import InputError, Preempted
from argomlops.trainer.codes import CodeSet, CodeSplit, load_or_extract_codes, load_vqvae
from argomlops.trainer.evaluate import EVALUATION, evaluate_run, summary
from argomlops.trainer.images import samples_png
from argomlops.trainer.logs import log
from argomlops.trainer.pixelcnn import build_pixelcnn
from argomlops.trainer.run import Run
from argomlops.trainer.sampler import Sampler
from argomlops.trainer.stage import StageParts, StageResult, run_stage
from argomlops.trainer.steps import MetricsFn
from argomlops.trainer.vqvae import decode_indices

STAGE = "pixelcnn"


def prior_inputs(codes: Any, tags: Any, conditional: bool) -> Any:
    """What the prior model takes: the codes alone, or a dict with the tag vectors."""
    return {"codes": codes, "tags": tags} if conditional else codes


def prior_metrics(logits: tf.Tensor, codes: tf.Tensor) -> dict[str, tf.Tensor]:
    """Mean cross-entropy (nats), the same in bits per code, and accuracy of logits (B, H, W, k, K)."""
    loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(codes, logits, from_logits=True))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), codes), tf.float32))
    return {"loss": loss, "bits_per_code": loss / math.log(2.0), "accuracy": accuracy}


def prior_batch_metrics(model: keras.Model, conditional: bool) -> MetricsFn:
    """The prior's metrics of a (codes, tags) batch: cross-entropy as loss, bits per code, accuracy."""

    def metrics(batch: tuple[tf.Tensor, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        codes, tags = batch
        return prior_metrics(model(prior_inputs(codes, tags, conditional), training=training), codes)

    return metrics


def sample_conditions(count: int, tag_names: list[str]) -> np.ndarray | None:
    """One-hot tag vectors cycling through the tags (None for an unconditional prior)."""
    if not tag_names:
        return None
    return np.eye(len(tag_names), dtype=np.float32)[np.arange(count) % len(tag_names)]


def _dataset(split: CodeSplit, batch_size: int, *, shuffle: bool, seed: int) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices((split.codes.astype(np.int32), split.tags))
    if shuffle:
        dataset = dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True).repeat()
    return dataset.batch(batch_size, drop_remainder=shuffle).prefetch(tf.data.AUTOTUNE)


def prior_parts(config: RunConfig, codes: CodeSet, vqvae: keras.Model) -> StageParts:
    """The prior's model, optimizer, metrics, code batches and samples for the stage runner."""
    settings, seed = config.training.pixelcnn, config.training.seed
    keras.utils.set_random_seed(seed)
    model = build_pixelcnn(config.models.pixelcnn, codes.grid, codes.num_embeddings, codes.codes_per_position)
    conditional = bool(codes.tag_names)
    sampler = Sampler(model)

    def images(epoch: int) -> bytes:
        condition = sample_conditions(settings.sample_count, codes.tag_names)
        drawn = sampler.sample(settings.sample_count, seed=seed, temperature=settings.temperature, condition=condition)
        columns = len(codes.tag_names) if conditional else max(1, int(math.sqrt(settings.sample_count)))
        return samples_png(decode_indices(vqvae, drawn), columns=columns)

    return StageParts(
        model=model,
        metrics=prior_batch_metrics(model, conditional),
        # Seeded by the epoch: a resumed run sees the same order an uninterrupted one would.
        train_batches=lambda epoch: _dataset(codes.train, settings.batch_size, shuffle=True, seed=seed + epoch),
        train_examples=len(codes.train),
        validation_batches=(
            (lambda: _dataset(codes.validation, settings.batch_size, shuffle=False, seed=seed))
            if len(codes.validation)
            else None
        ),
        images=images,
        images_dir="samples",
        examples="code grids",
    )


def run_prior_stage(run: Run) -> StageResult:
    """Train (or resume, or skip when done) the PixelCNN prior of `run`."""
    config = run.config

    def build() -> StageParts:
        vqvae = load_vqvae(run.store, run.parent)
        codes = load_or_extract_codes(config, run.store, vqvae)
        grid = codes.grid
        log(
            f"{STAGE}: {len(codes.train)} training, {len(codes.validation)} validation code grids of "
            f"{grid[0]}x{grid[1]}x{codes.codes_per_position}, codebook of {codes.num_embeddings}"
        )
        return prior_parts(config, codes, vqvae)

    result = run_stage(run, STAGE, config.training.pixelcnn, build)
    evaluate_prior(run, result)
    return result


def evaluate_prior(run: Run, result: StageResult) -> None:
    """Judge the finished prior (`evaluate.py`) unless evaluateCount is 0 or a skipped stage has its verdict."""
    settings = run.config.training.pixelcnn
    if not settings.evaluate_count or (result.skipped and run.store.exists(EVALUATION)):
        return
    if run.stop.is_set():
        # SIGTERM during the stage's last checkpoint: the retry finds the stage done and evaluates.
        raise Preempted(f"{STAGE}: stopped by SIGTERM before the evaluation; rerun to evaluate")
    try:
        evaluation = evaluate_run(run.store, settings.evaluate_count, seed=run.config.training.seed)
    except InputError as exc:
        # The prior is trained and saved: a judge that cannot be made (the data moved, say) is reported,
        # not turned into a failed run. Without evaluation.json the next run of the stage tries again.
        log(f"{STAGE}: evaluation skipped: {exc}")
        run.write_provenance(evaluation={"error": str(exc)})
        return
    # The run's in-memory provenance is written again later (end time): it must carry the summary too.
    run.write_provenance(evaluation=summary(evaluation))
