"""The run directory `<artifacts>/<run-id>/`: run.yaml, provenance.json, code/ and latest.json.

`open_run(config, run_id)` creates a new run or reopens an existing one:

1. A run whose folder already holds `run.yaml` is resumed. The stored run.yaml wins over the config
   given now (a retried Argo pod must continue the run it started); differences are logged.
2. A new run writes the resolved config to `run.yaml`, copies the argomlops source that runs into
   `code/`, and starts `provenance.json` (package version, git sha, parent, host, accelerator).

provenance.json also records how the last attempt ended (`last_exit`: exit code, time, the error line of a
failure; null while it runs) and where stages were stopped and resumed (`events`).

`Run.write_pod_report` writes the pod's report for the operator after every checkpoint and at exit: the newest
checkpoint and what the process asked of the bucket (`gcs_usage.write_pod_report`; nothing outside a
Workflow pod, where `$ARGOMLOPS_REPORT_FILE` is unset).

`latest.json` says, per stage, which checkpoint is the newest complete state and whether the stage has
finished (`<stage>/model.keras` written). It is written last, after every checkpoint, so whatever it
names is complete. Where a stage stands (epoch, step, metrics) is in that checkpoint's state.json
alone (`stage_state.StageState`). Its shape:

    {"run_id": "...", "updated": "...", "stage": "vqvae",
     "stages": {"vqvae": {"checkpoint": "vqvae/checkpoints/step-00000120", "done": false}}}
"""

from __future__ import annotations

import importlib
import os
import platform
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

import argomlops
from argomlops.config import RunConfig, error_lines
from argomlops.errors import InputError
from argomlops.runid import new_run_id
from argomlops.trainer.gcs_usage import write_pod_report
from argomlops.trainer.logs import log
from argomlops.trainer.report_schedule import ReportSchedule
from argomlops.trainer.storage import ArtifactStore, open_store


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (provenance and latest.json timestamps)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Run:
    """One run: its resolved config, id, store and the shared state both stages read and write."""

    config: RunConfig
    run_id: str
    store: ArtifactStore
    resumed: bool = False
    parent: ArtifactStore | None = None
    # Set by the SIGTERM handler; the stage runner checks it after every step.
    stop: threading.Event = field(default_factory=threading.Event)
    latest: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    # Rewrites report.html at the end of each stage and after checkpoints when that is cheap.
    page: ReportSchedule = field(default_factory=ReportSchedule)
    opened: float = field(default_factory=time.monotonic)
    reported: dict[str, Any] = field(default_factory=dict)
    # The stage this process trains last: its end is the run's end, which writes the page anyway.
    last_stage: str | None = None

    @property
    def uri(self) -> str:
        """`<artifacts>/<run-id>`."""
        return self.store.uri

    def stage_state(self, stage: str) -> dict[str, Any]:
        """What latest.json says about `stage` (empty when it never checkpointed)."""
        stages: dict[str, Any] = self.latest.get("stages", {})
        return dict(stages.get(stage, {}))

    def write_latest(self, stage: str, *, checkpoint: str, done: bool) -> None:
        """Point latest.json's entry of `stage` at `checkpoint` and write it (atomically; call it last)."""
        stages = self.latest.setdefault("stages", {})
        stages[stage] = {"checkpoint": checkpoint, "done": done}
        self.latest.update(run_id=self.run_id, updated=utc_now(), stage=stage)
        self.store.write_json("latest.json", self.latest)

    def write_pod_report(self, **values: Any) -> None:
        """Update the pod's report (stage, checkpoint, step) and write it with the bucket figures."""
        self.reported.update(values)
        write_pod_report(self.store.stored_bytes(), run_id=self.run_id, **self.reported)

    def record_stage(self, stage: str, **values: Any) -> None:
        """Merge `values` into provenance.json's entry for `stage` and write it."""
        self.provenance.setdefault("stages", {}).setdefault(stage, {}).update(values)
        self.write_provenance()

    def write_provenance(self, **values: Any) -> None:
        """Merge top-level `values` into provenance.json and write it."""
        self.provenance.update(values)
        self.store.write_json("provenance.json", self.provenance)

    def record_event(self, event: str, stage: str, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> None:
        """Note a stop (SIGTERM) or a resume at a point of a stage; written with the stage's next record."""
        where = {"epoch": epoch, "step_in_epoch": step_in_epoch, "steps_per_epoch": steps_per_epoch}
        self.provenance.setdefault("events", []).append({"event": event, "stage": stage, **where, "at": utc_now()})

    def record_exit(self, code: int, error: str | None = None) -> None:
        """Write how this attempt ended (exit code, error line of a failure, its seconds) into provenance.json."""
        seconds = float(self.provenance.get("trained_seconds") or 0.0) + time.monotonic() - self.opened
        self.write_provenance(
            last_exit={"code": code, "at": utc_now(), "error": error}, trained_seconds=round(seconds, 1)
        )


def git_sha() -> str | None:
    """The source's git commit: $ARGOMLOPS_GIT_SHA (set in images), else `git rev-parse` when it works."""
    sha = os.environ.get("ARGOMLOPS_GIT_SHA")
    if sha:
        return sha
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(argomlops.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def accelerators() -> list[str]:
    """Names of the GPUs TensorFlow sees (empty on CPU)."""
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(str(details.get("device_name", gpu.name)))
    return names


def _version() -> str:
    try:
        return metadata.version("argomlops")
    except metadata.PackageNotFoundError:
        return "unknown"


CODE_PACKAGES = ("argomlops", "argomlops.config", "argomlops.trainer")
"""The packages whose source is the trainer that ran (the operator and the workflow builders are not)."""


def copy_code(store: ArtifactStore) -> int:
    """Copy the .py files of the trainer's packages that run now to `code/<import path>/`; returns the count."""
    count = 0
    with tempfile.TemporaryDirectory(prefix="argomlops-code-") as temp:
        for name in CODE_PACKAGES:
            source = Path(importlib.import_module(name).__file__ or "").parent
            for path in sorted(source.glob("*.py")):
                target = Path(temp, *name.split("."), path.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
                count += 1
        store.upload_tree(Path(temp), "code")
    return count


def _choose_run_id(root: ArtifactStore) -> str:
    taken: set[str] = set()
    while True:
        run_id = new_run_id(taken=taken)
        if not root.exists(f"{run_id}/run.yaml"):
            return run_id
        taken.add(run_id)


def stored_config(store: ArtifactStore) -> RunConfig:
    """The run config in `store`'s run.yaml; an invalid one is an InputError naming the fields."""
    from pydantic import ValidationError

    try:
        return RunConfig.model_validate(yaml.safe_load(store.read_text("run.yaml")))
    except ValidationError as exc:
        raise InputError(f"{store.uri}/run.yaml: " + "; ".join(error_lines(exc))) from exc


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        lines = []
        for key in sorted(set(a) | set(b), key=str):
            lines += _differences(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        return lines
    return [] if a == b else [f"{path}: stored {a!r}, given {b!r}"]


def open_run(config: RunConfig, run_id: str | None = None) -> Run:
    """Open `<config.artifacts>/<run-id>` for training: resume it when it exists, else create it."""
    # The artifacts root comes from the config only, so run.yaml always names where the run lives.
    root = open_store(config.artifacts)
    parent = open_store(config.resume_from) if config.resume_from else None
    if parent is not None and not parent.exists("run.yaml"):
        # A mistyped parent must not quietly become a run from scratch.
        raise InputError(f"resumeFrom: {parent.uri} is not a run folder (it has no run.yaml)")
    run_id = run_id or _choose_run_id(root)
    store = root.child(run_id)
    if store.exists("run.yaml"):
        stored = stored_config(store)
        given = config.model_copy(update={"artifacts": stored.artifacts}).model_dump(mode="json", by_alias=True)
        for line in _differences(stored.model_dump(mode="json", by_alias=True), given):
            log(f"config differs from the stored run.yaml, the stored value is used: {line}")
        run = Run(config=stored, run_id=run_id, store=store, resumed=True)
        if store.exists("latest.json"):
            run.latest = store.read_json("latest.json")
        if store.exists("provenance.json"):
            run.provenance = store.read_json("provenance.json")
        store.stored_bytes(refresh=True)  # what earlier attempts left: the folder's size in the report
        log(f"resuming run {store.uri}")
    else:
        run = Run(config=config, run_id=run_id, store=store)
        store.write_text("run.yaml", config.to_yaml())
        files = copy_code(store)
        log(f"new run {store.uri} ({files} source files copied to code/)")
    if run.config.resume_from:
        # The stored run.yaml wins on a resume: its parent, not the given config's, is the one to open.
        same = parent is not None and run.config.resume_from == config.resume_from
        run.parent = parent if same else open_store(run.config.resume_from)
    attempts = int(run.provenance.get("attempts", 0)) + 1
    run.write_provenance(
        run_id=run_id,
        version=_version(),
        git_sha=git_sha(),
        parent=run.config.resume_from,
        started=run.provenance.get("started", utc_now()),
        ended=None,
        attempts=attempts,
        host=socket.gethostname(),
        platform=platform.platform(),
        accelerators=accelerators(),
        # null while an attempt runs; record_exit fills it in (argomlops runs tells running from failed by it).
        last_exit=None,
    )
    return run
