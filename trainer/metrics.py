"""Where a stage's numbers go: metrics.jsonl, TensorBoard events and Argo's progress file.

- `MetricsLog` keeps `<stage>/metrics.jsonl` (one JSON line per epoch) in the run's store. Each epoch's
  line is appended atomically (`ArtifactStore.append_text`: in GCS one compose, never the whole file
  again), so a reader never sees half a line and the bytes uploaded stay those of the lines.
- `TensorBoardLog` writes events to a local folder (the run folder itself for a local run, a temp folder
  for gs://) and `sync()` appends what each events file gained since the last sync to its copy in
  `<stage>/tensorboard/` at each checkpoint.
- `ProgressFile` writes "done/total" to `$ARGO_PROGRESS_FILE` (Argo shows it as the node's progress).
- `publish_newest_images` copies each new grid to `$ARGOMLOPS_NEWEST_IMAGES` (the node's output artifact).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from argomlops.pod import NEWEST_IMAGES_ENV
from argomlops.trainer.storage import ArtifactStore, LocalStore


class MetricsLog:
    """`<stage>/metrics.jsonl` of one stage: one JSON object per epoch."""

    def __init__(self, store: ArtifactStore, stage: str) -> None:
        self.store = store
        self.rel = f"{stage}/metrics.jsonl"
        self.records: list[dict[str, Any]] = []
        if store.exists(self.rel):
            self.records = [json.loads(line) for line in store.read_text(self.rel).splitlines() if line.strip()]

    def keep_epochs(self, last_epoch: int) -> None:
        """Forget lines past `last_epoch`: epochs a preempted run logged but did not checkpoint are redone."""
        kept = [r for r in self.records if r.get("epoch", 0) <= last_epoch]
        if len(kept) != len(self.records):
            self.records = kept
            self._write()

    def append(self, record: dict[str, Any]) -> None:
        """Add one epoch's line to the end of the file."""
        self.records.append(record)
        self.store.append_text(self.rel, _line(record))

    def _write(self) -> None:
        self.store.write_text(self.rel, "".join(_line(r) for r in self.records))


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, allow_nan=False, default=_finite) + "\n"


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class TensorBoardLog:
    """Scalars of a stage as TensorBoard events under `<stage>/tensorboard/`."""

    def __init__(self, store: ArtifactStore, stage: str) -> None:
        import tensorflow as tf

        self.store = store
        self.rel = f"{stage}/tensorboard"
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        if isinstance(store, LocalStore):
            self.local = Path(store.uri) / self.rel
        else:
            self._temp = tempfile.TemporaryDirectory(prefix="argomlops-tb-")
            self.local = Path(self._temp.name)
        self.writer = tf.summary.create_file_writer(str(self.local))
        # Bytes of each local events file already in the store: only what follows is sent at a sync.
        self._synced: dict[str, int] = {}

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write each finite value under its name at `step`."""
        import tensorflow as tf

        with self.writer.as_default():
            for name, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    tf.summary.scalar(name, value, step=step)

    def sync(self) -> None:
        """Flush, and append what each events file gained to the store when they are written elsewhere."""
        self.writer.flush()
        if self._temp is None:
            return
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            name = path.relative_to(self.local).as_posix()
            data = path.read_bytes()
            done = self._synced.get(name, 0)
            if len(data) == done:
                continue
            # Event files only grow; a new one (a new writer, a resumed run) starts from nothing.
            if done == 0:
                self.store.write_bytes(f"{self.rel}/{name}", data)
            else:
                self.store.append_bytes(f"{self.rel}/{name}", data[done:])
            self._synced[name] = len(data)

    def close(self) -> None:
        """Flush, copy and release the writer."""
        self.sync()
        self.writer.close()
        if self._temp is not None:
            self._temp.cleanup()


class ProgressFile:
    """ "done/total" in `$ARGO_PROGRESS_FILE`, written atomically and at most once a second."""

    def __init__(self, path: str | None = None, min_interval: float = 1.0) -> None:
        chosen = path if path is not None else os.environ.get("ARGO_PROGRESS_FILE")
        self.path = Path(chosen) if chosen else None
        self.min_interval = min_interval
        self._last = 0.0

    def update(self, done: int, total: int, force: bool = False) -> None:
        """Record progress; skipped when written less than `min_interval` ago unless `force`."""
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        temp.write_text(f"{done}/{total}")
        os.replace(temp, self.path)


"""A local file path; when set, every new grid is also written there (the Argo template declares it as
the stage node's output artifact, so the Argo UI shows the newest pictures)."""


def publish_newest_images(png: bytes, path: str | None = None) -> None:
    """Write `png` atomically to `$ARGOMLOPS_NEWEST_IMAGES` (or `path`); nothing when neither is set."""
    chosen = path if path is not None else os.environ.get(NEWEST_IMAGES_ENV)
    if not chosen:
        return
    target = Path(chosen)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    temp.write_bytes(png)
    os.replace(temp, target)
