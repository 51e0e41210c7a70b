"""The stage runner: one training loop, checkpointing, resume and preemption for every stage.

A stage (vqvae, pixelcnn) supplies only what is its own, as `StageParts`: the model, a
metrics function of a batch (`steps.py`: its `loss` is minimised, the rest reported), the training
batches of an epoch, the validation batches and an images callback. `run_stage` owns everything else:

- the train and validation steps (`steps.train_step`, compiled with tf.function / XLA); with several
  GPUs the model, optimizer and train step live under `replicas.training_strategy()` (MirroredStrategy:
  `batchSize` is the global batch, split among the GPUs; see `replicas.py`), while validation, images
  and checkpoints read the first replica's copy of the (identical) variables;
- the epoch loop and `steps_per_epoch` (the config's, else one pass over the training examples);
- `<stage>/metrics.jsonl` (one line per epoch: stage, epoch, step, train_*/val_* metrics, img_per_s,
  wall_s), TensorBoard scalars in `<stage>/tensorboard/`, `$ARGO_PROGRESS_FILE` ("done/total" steps);
- checkpoints every `checkpoint_every` epochs to `<stage>/checkpoints/step-N/` (see `checkpoint.py`),
  then `latest.json`, last; the newest `KEEP_CHECKPOINTS` are kept;
- resume: the checkpoint latest.json names is restored (weights, optimizer, epoch, step within the
  epoch, RNG, best and last metrics: its state.json is the one record of where a stage stands) and
  the epoch's batches are skipped up to where it stopped, so the step sequence is the one an
  uninterrupted run takes; a stage latest.json marks done is skipped. A fresh run with
  `resume_from` starts from the parent run's `<stage>/model.keras` (or its newest checkpoint);
- SIGTERM: `install_sigterm_handler(run.stop)` only sets a flag; after each step the loop checks it,
  checkpoints the current step (mid-epoch), writes latest.json and raises `Preempted` (exit 143);
- `<stage>/model.keras` and a last images grid at the end; per-stage figures in provenance.json,
  copied from the final checkpoint's state;
- what a person watches: every epoch's log line ends with the stage's ETA (`eta=4m07s`, `progress.py`),
  a terminal also gets a live bar; each new grid is copied to `$ARGOMLOPS_NEWEST_IMAGES` (the Argo
  node's output artifact); stops and resumes go into provenance.json's `events`; report.html is
  rewritten at the stage's end and after checkpoints when cheap (`report_schedule.py`), never during a
  SIGTERM checkpoint.

Usage (what a stage module writes):

    def run_prior_stage(run: Run) -> StageResult:
        settings = run.config.training.pixelcnn

        def build() -> StageParts:
            model = build_pixelcnn(...)
            return StageParts(
                model=model,
                metrics=lambda batch, training: {"loss": ..., "accuracy": ...},
                train_batches=lambda epoch: codes_dataset(seed=run.config.training.seed + epoch),
                train_examples=len(train_codes),
                validation_batches=lambda: validation_codes,
                images=lambda epoch: samples_png(model, ...),  # PNG bytes
                images_dir="samples",
                examples="code grids",
            )

        return run_stage(run, "pixelcnn", settings, build)

`train_batches(epoch)` must give the same batches in the same order each time it is called with the
same epoch (seed the shuffle with the epoch) and may be endless; the runner takes `steps_per_epoch`.
Under several replicas it must be a `tf.data.Dataset` of global batches (the strategy splits them).
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from argomlops.config import StageTraining
from argomlops.errors import InputError, Preempted
from argomlops.trainer.checkpoint import (
    copy_weights,
    list_checkpoints,
    load_keras,
    load_weights,
    prune_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from argomlops.trainer.logs import log
from argomlops.trainer.metrics import MetricsLog, ProgressFile, TensorBoardLog, publish_newest_images
from argomlops.trainer.progress import Pace, format_eta, terminal_progress
from argomlops.trainer.replicas import training_strategy
from argomlops.trainer.run import Run, utc_now
from argomlops.trainer.stage_state import StageState, read_state
from argomlops.trainer.steps import MetricsFn, distributed_train_step, make_optimizer, train_step

KEEP_CHECKPOINTS = 2
LOG_EVERY_STEPS = 50
"""A mid-epoch log line every this many steps: long epochs show they are alive."""


@dataclass
class StageParts:
    """What a stage supplies to the runner (see the module docstring)."""

    model: keras.Model
    metrics: MetricsFn
    train_batches: Callable[[int], Iterable[Any]]
    train_examples: int
    validation_batches: Callable[[], Iterable[Any]] | None = None
    images: Callable[[int], bytes] | None = None
    images_dir: str = "images"
    # What one example is called in messages ("images", "code grids").
    examples: str = "images"

    @property
    def monitor(self) -> str:
        """The metric whose lowest value is "best": validation loss, or training loss without validation."""
        return "val_loss" if self.validation_batches is not None else "train_loss"


@dataclass
class StageResult:
    """How a stage ended: epochs and steps done, the last and best epoch's metrics."""

    stage: str
    epochs: int
    steps: int
    last: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False


def install_sigterm_handler(flag: threading.Event) -> None:
    """On SIGTERM, only set `flag`: the training loop checkpoints and exits at the next step boundary."""

    def handler(signum: int, frame: Any) -> None:
        flag.set()

    signal.signal(signal.SIGTERM, handler)


class _Mean:
    """Weighted running means of step metrics, kept as tensors so the loop never waits for the device."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.count = 0
        self.weight: Any = 0.0

    def add(self, values: Mapping[str, Any], weight: Any = None) -> None:
        """Add one step's metrics; `weight` (e.g. the batch size) defaults to 1 without an extra op per metric."""
        # Training steps pass no weight: this runs after every step, so it adds no multiply there.
        scale = None if weight is None else tf.cast(weight, tf.float32)
        for name, value in values.items():
            value = tf.cast(value, tf.float32)
            if scale is not None:
                value = value * scale
            self.sums[name] = value if name not in self.sums else self.sums[name] + value
        self.count += 1
        self.weight = self.weight + (1.0 if scale is None else scale)

    def result(self, prefix: str = "") -> dict[str, float]:
        total = max(float(self.weight), 1e-12)
        return {f"{prefix}{k}": float(v) / total for k, v in self.sums.items()}


def _batch_size(batch: Any) -> Any:
    """Examples in a batch (the leading dimension of its first tensor)."""
    return tf.shape(tf.nest.flatten(batch)[0])[0]


def _skip(batches: Iterable[Any], count: int) -> Iterable[Any]:
    """`batches` without the first `count` (the steps an epoch took before a preemption)."""
    if isinstance(batches, tf.data.Dataset):
        return batches.skip(count) if count else batches  # skipped inside tf.data, without a round trip per batch
    iterator = iter(batches)
    for _ in range(count):
        next(iterator)
    return iterator


def _fmt(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


class _Loop:
    """The state of one stage's training: counters, logs, and the checkpoint/finish procedures."""

    def __init__(self, run: Run, stage: str, settings: StageTraining, parts: StageParts) -> None:
        self.run, self.stage, self.settings, self.parts = run, stage, settings, parts
        if parts.train_examples < settings.batch_size:
            raise InputError(
                f"training.{stage}.batchSize: {settings.batch_size} is more than the "
                f"{parts.train_examples} training {parts.examples}"
            )
        self.steps_per_epoch = settings.steps_per_epoch or max(1, parts.train_examples // settings.batch_size)
        self.total = settings.epochs * self.steps_per_epoch
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps completed (global within the stage)
        self.step_in_epoch = 0
        self.saved_step, self.saved_rel = -1, ""
        self.best: dict[str, Any] = {}
        self.last: dict[str, Any] = {}
        self.progress = ProgressFile()
        self.pace = Pace(0, self.total)
        jit = run.config.training.jit_compile
        # Built here for both stages alike: the schedule needs the stage's step count.
        self.optimizer = make_optimizer(
            settings.learning_rate, settings.learning_rate_schedule, self.total, settings.warmup_steps
        )
        self.strategy = training_strategy()
        self.replicas = int(self.strategy.num_replicas_in_sync)
        step = train_step(parts.model, self.optimizer, parts.metrics)
        if self.replicas > 1:
            if jit:
                log(f"{stage}: jitCompile is not used on {self.replicas} replicas (XLA cannot compile that step)")
            self.train_step = distributed_train_step(self.strategy, step)
        else:
            self.train_step = tf.function(step, jit_compile=jit)
        self.validation_step = tf.function(lambda batch: parts.metrics(batch, False), jit_compile=jit)

    def state(self) -> StageState:
        """Where the stage stands now, as a checkpoint records it."""
        return StageState(self.stage, self.epoch, self.step, self.step_in_epoch, self.best, self.last)

    # -- start ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Restore the newest checkpoint, or the parent's weights, or start fresh."""
        parts, store = self.parts, self.run.store
        self.optimizer.build(parts.model.trainable_variables)
        rel = self.run.stage_state(self.stage).get("checkpoint")
        if rel is None and self.run.resumed:
            # latest.json may be missing when a run was stopped before its first checkpoint completed.
            found = list_checkpoints(store, self.stage)
            rel = found[-1] if found else None
        if rel:
            state = restore_checkpoint(store, rel, parts.model, self.optimizer)
            self.epoch, self.step, self.step_in_epoch = state.epoch, state.step, state.step_in_epoch
            self.best, self.last = state.best, state.last
            self.saved_step, self.saved_rel = self.step, rel
            self.run.write_pod_report(stage=self.stage, checkpoint=rel, step=self.step, epoch=self.epoch)
            log(f"{self.stage}: resumed from {rel}: epoch {self.epoch}, step {self.step} (+{self.step_in_epoch})")
            self.run.record_event("resumed", self.stage, self.epoch, self.step_in_epoch, self.steps_per_epoch)
        elif self.run.parent is not None:
            self._from_parent()
        self.metrics = MetricsLog(store, self.stage)
        self.metrics.keep_epochs(self.epoch)
        self.tensorboard = TensorBoardLog(store, self.stage)

    def _from_parent(self) -> None:
        parent = self.run.parent
        assert parent is not None
        model_rel = f"{self.stage}/model.keras"
        if parent.exists(model_rel):
            copy_weights(load_keras(parent, model_rel), self.parts.model, f"{parent.uri}/{model_rel}")
            log(f"{self.stage}: starting from the weights of {parent.uri}/{model_rel}")
            return
        found = list_checkpoints(parent, self.stage)
        if found:
            load_weights(parent, found[-1], self.parts.model)
            log(f"{self.stage}: starting from the weights of {parent.uri}/{found[-1]}")
        else:
            log(f"{self.stage}: parent {parent.uri} has no {self.stage} model; starting from scratch")

    # -- the loop ---------------------------------------------------------------------------------
    def train(self) -> None:
        """Run the remaining epochs; raises Preempted after a checkpoint when the stop flag is set."""
        settings = self.settings
        self.pace = Pace(self.step, self.total)
        with terminal_progress(self.stage, self.total, completed=self.step) as bar:
            while self.epoch < settings.epochs:
                number = self.epoch + 1
                started = time.monotonic()
                train = _Mean()
                batches = self._batches(number)
                first = self.step_in_epoch
                while self.step_in_epoch < self.steps_per_epoch:
                    self._check_stop()
                    train.add(self.train_step(next(batches)))
                    self.step += 1
                    self.step_in_epoch += 1
                    self.progress.update(self.step, self.total)
                    bar.update(self.step, f"{self.stage} epoch {number}/{settings.epochs}")
                    if self.step_in_epoch % LOG_EVERY_STEPS == 0:
                        log(
                            f"{self.stage} epoch {number} step {self.step_in_epoch}/{self.steps_per_epoch} "
                            f"{_fmt(train.result())} eta={format_eta(self.pace.eta(self.step))}"
                        )
                train_seconds = time.monotonic() - started
                self._end_epoch(number, train, train_seconds, self.step_in_epoch - first, started)
                self._check_stop()

    def _batches(self, number: int) -> Iterator[Any]:
        """Epoch `number`'s training batches from where it stands; split among the replicas when several."""
        batches = _skip(self.parts.train_batches(number), self.step_in_epoch)
        if self.replicas > 1:
            if not isinstance(batches, tf.data.Dataset):
                raise TypeError(f"{self.stage}: train_batches must give a tf.data.Dataset on several replicas")
            return iter(self.strategy.experimental_distribute_dataset(batches))
        return iter(batches)

    def _check_stop(self) -> None:
        if self.run.stop.is_set():
            where = f"epoch {self.epoch} + {self.step_in_epoch} steps, step {self.step}"
            log(f"{self.stage}: SIGTERM: checkpointing at {where}")
            self.run.record_event("stopped", self.stage, self.epoch, self.step_in_epoch, self.steps_per_epoch)
            # No report now: the node's shutdown notice leaves seconds, and they belong to the checkpoint.
            self.checkpoint(report=False)
            raise Preempted(
                f"{self.stage}: stopped by SIGTERM at step {self.step}; checkpoint written, rerun to resume"
            )

    def _end_epoch(self, number: int, train: _Mean, train_seconds: float, steps: int, started: float) -> None:
        settings, parts = self.settings, self.parts
        record: dict[str, Any] = {"stage": self.stage, "epoch": number, "step": self.step}
        if steps < self.steps_per_epoch:
            # Resumed mid-epoch: the train_* means cover only the steps taken since the resume.
            record["resumed_at_step"] = self.steps_per_epoch - steps
        record.update(train.result("train_"))
        record.update(self.validate())
        record["img_per_s"] = round(steps * self.settings.batch_size / max(train_seconds, 1e-9), 1)
        self.epoch, self.step_in_epoch = number, 0
        last_epoch = number == settings.epochs
        if parts.images is not None and (last_epoch or (settings.images_every and number % settings.images_every == 0)):
            png = parts.images(number)
            self.run.store.write_bytes(f"{self.stage}/{parts.images_dir}/epoch-{number:04d}.png", png)
            publish_newest_images(png)
        record["wall_s"] = round(time.monotonic() - started, 2)
        self.last = record
        monitored = record.get(parts.monitor)
        if monitored is not None and (not self.best or monitored < self.best.get(parts.monitor, float("inf"))):
            self.best = record
        self.metrics.append(record)
        self.tensorboard.scalars(self.step, {k: v for k, v in record.items() if k not in ("stage", "epoch", "step")})
        self.progress.update(self.step, self.total, force=True)
        log(
            f"{self.stage} epoch {number}/{settings.epochs} step {self.step} "
            + _fmt({k: v for k, v in record.items() if k not in ("stage", "epoch", "step")})
            + f" eta={format_eta(self.pace.eta(self.step))}"
        )
        if last_epoch or number % settings.checkpoint_every == 0:
            self.checkpoint()

    def validate(self) -> dict[str, float]:
        """Mean of the validation step over the validation batches, as `val_*` metrics."""
        if self.parts.validation_batches is None:
            return {}
        mean = _Mean()
        # Weighted by batch size: a short last batch must not count as much as a full one.
        for batch in self.parts.validation_batches():
            mean.add(self.validation_step(batch), _batch_size(batch))
        return mean.result("val_") if mean.count else {}

    # -- checkpoint and finish --------------------------------------------------------------------
    def checkpoint(self, report: bool = True) -> str:
        """Checkpoint the current step, point latest.json at it, drop old checkpoints, refresh report.html."""
        if self.saved_step == self.step and self.saved_rel:
            return self.saved_rel
        rel = save_checkpoint(self.run.store, self.parts.model, self.optimizer, self.state())
        self.tensorboard.sync()
        self.run.write_latest(self.stage, checkpoint=rel, done=False)
        self.saved_step, self.saved_rel = self.step, rel
        prune_checkpoints(self.run.store, self.stage, KEEP_CHECKPOINTS, rel)
        self.run.write_pod_report(stage=self.stage, checkpoint=rel, step=self.step, epoch=self.epoch)
        if report:
            self.run.page.after_checkpoint(self.run.store)
        return rel

    def finish(self) -> StageResult:
        """Write model.keras, mark the stage done in latest.json, record it in provenance.json."""
        rel = f"{self.stage}/model.keras"
        with tempfile.TemporaryDirectory(prefix="argomlops-model-") as temp:
            self.parts.model.save(Path(temp) / "model.keras")
            self.run.store.upload_file(Path(temp) / "model.keras", rel)
        self.tensorboard.close()
        self.progress.update(self.step, self.total, force=True)
        # The last epoch always checkpoints, so the newest checkpoint is this final state.
        self.run.write_latest(self.stage, checkpoint=self.checkpoint(), done=True)
        self.run.record_stage(self.stage, **self.state().figures(), model=rel, finished=utc_now())
        if self.stage != self.run.last_stage:
            # The last stage's page is the run's: written once at the run's end, with its evaluation and
            # exit (writing it here too would upload the whole page twice in a row).
            self.run.page.write(self.run.store)
        log(f"{self.stage}: done after {self.epoch} epochs, {self.step} steps; wrote {self.run.uri}/{rel}")
        return StageResult(self.stage, self.epoch, self.step, self.last, self.best)


def run_stage(run: Run, stage: str, settings: StageTraining, build: Callable[[], StageParts]) -> StageResult:
    """Train `stage` of `run` to `settings.epochs` (resuming when it can); see the module docstring."""
    entry = run.stage_state(stage)
    if entry.get("done") and run.store.exists(f"{stage}/model.keras"):
        done = read_state(run.store, entry["checkpoint"])
        log(f"{stage}: already done ({done.epoch} epochs); skipping")
        return StageResult(stage, done.epoch, done.step, done.last, done.best, skipped=True)
    strategy = training_strategy()
    # The default strategy's scope is left out, so one device runs exactly the code it always ran.
    scope = strategy.scope() if strategy.num_replicas_in_sync > 1 else contextlib.nullcontext()
    with scope:
        loop = _Loop(run, stage, settings, build())
        loop.start()
        started = run.provenance.get("stages", {}).get(stage, {}).get("started", utc_now())
        run.record_stage(stage, **loop.state().figures(), started=started)
        log(
            f"{stage}: training epochs {loop.epoch + 1}..{settings.epochs}, {loop.steps_per_epoch} steps each"
            + (f", batches of {settings.batch_size} split among {loop.replicas} replicas" if loop.replicas > 1 else "")
        )
        try:
            loop.train()
        finally:
            if run.stop.is_set():
                run.record_stage(stage, **loop.state().figures())
        return loop.finish()
