"""Checkpoints of a stage: weights, optimizer state, counters and RNG state, never visible half-written.

A checkpoint is the folder `<stage>/checkpoints/step-00001234/` holding

- `weights.npz`    every model variable (trainable or not: EMA codebook, RNG counters), by position
- `optimizer.npz`  every optimizer variable (Adam's iteration count and moments, loss scale)
- `state.json`     the `StageState` of stage_state.py (epoch, step, step within the epoch, best and last
                   epoch's metrics), variable paths, the global TF RNG state

It is written to a local temp folder first, then uploaded under its fresh name; only afterwards does
`latest.json` (see `run.py`) point at it, so a reader following `latest.json` only ever finds complete
checkpoints. Older checkpoints are deleted after `latest.json` has moved on.

The state.json of a stage's newest checkpoint is the one record of where the stage stands: resume
restores from it, provenance.json copies its figures, and latest.json only names it.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from argomlops.errors import InputError
from argomlops.trainer.stage_state import STATE_FILE, StageState
from argomlops.trainer.storage import ArtifactStore

_NAME = re.compile(r"^step-(\d{8,})$")


def load_keras(store: ArtifactStore, rel: str) -> keras.Model:
    """The `.keras` model at `rel` in `store` (copied to a temp folder first: Keras loads local files only)."""
    with tempfile.TemporaryDirectory(prefix="argomlops-model-") as temp:
        local = Path(temp) / "model.keras"
        store.download_file(rel, local)
        model: keras.Model = keras.models.load_model(local)
    return model


def copy_weights(source: keras.Model, target: keras.Model, where: str) -> None:
    """Copy weights between models of the same shape; a parent of another shape is bad input (exit 2)."""
    ours = [tuple(w.shape) for w in target.weights]
    theirs = [tuple(w.shape) for w in source.weights]
    if ours != theirs:
        first = next(
            (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs))
        )
        detail = (
            f"{len(theirs)} variables, this model {len(ours)}"
            if len(ours) != len(theirs)
            else f"variable {target.weights[first].path} is {theirs[first]}, this model's {ours[first]}"
        )
        raise InputError(f"resumeFrom {where}: another architecture than this run's models config ({detail})")
    target.set_weights(source.get_weights())


def checkpoint_dir(stage: str, step: int) -> str:
    """The store path of the checkpoint of `stage` at global `step`."""
    return f"{stage}/checkpoints/step-{step:08d}"


def _arrays(variables: list[Any]) -> dict[str, Any]:
    return {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}


def _assign(variables: list[Any], arrays: Any, what: str, where: str) -> None:
    if len(arrays.files) != len(variables):
        raise InputError(f"{where}: {what} has {len(arrays.files)} variables, the model {len(variables)}")
    for i, variable in enumerate(variables):
        value = arrays[f"v{i:05d}"]
        if tuple(value.shape) != tuple(variable.shape):
            raise InputError(f"{where}: {what} variable {variable.path} has shape {value.shape}, not {variable.shape}")
        variable.assign(value)


def save_checkpoint(
    store: ArtifactStore, model: keras.Model, optimizer: keras.optimizers.Optimizer, state: StageState
) -> str:
    """Upload a checkpoint of `model`, `optimizer` and `state`; returns its store path."""
    rel = checkpoint_dir(state.stage, state.step)
    full = asdict(state)
    full["weights"] = [v.path for v in model.weights]
    full["optimizer"] = [v.path for v in optimizer.variables]
    full["tf_rng"] = tf.random.get_global_generator().state.numpy().tolist()
    with tempfile.TemporaryDirectory(prefix="argomlops-ckpt-") as temp:
        np.savez(Path(temp) / "weights.npz", **_arrays(model.weights))
        np.savez(Path(temp) / "optimizer.npz", **_arrays(optimizer.variables))
        (Path(temp) / STATE_FILE).write_text(json.dumps(full, indent=2) + "\n")
        # state.json goes last: a folder with it is complete even when latest.json never got written.
        for name in ("weights.npz", "optimizer.npz", STATE_FILE):
            store.upload_file(Path(temp) / name, f"{rel}/{name}")
    return rel


def _read_checkpoint(
    store: ArtifactStore, rel: str, model: keras.Model, optimizer: keras.optimizers.Optimizer | None
) -> dict[str, Any]:
    """Download the checkpoint at `rel`, set `model` (and `optimizer` when given) from it; returns its state."""
    with tempfile.TemporaryDirectory(prefix="argomlops-ckpt-") as temp:
        store.download_tree(rel, Path(temp))
        state: dict[str, Any] = json.loads((Path(temp) / STATE_FILE).read_text())
        where = f"{store.uri}/{rel}"
        with np.load(Path(temp) / "weights.npz") as arrays:
            _assign(model.weights, arrays, "weights", where)
        if optimizer is not None:
            with np.load(Path(temp) / "optimizer.npz") as arrays:
                _assign(optimizer.variables, arrays, "optimizer", where)
    return state


def load_weights(store: ArtifactStore, rel: str, model: keras.Model) -> StageState:
    """Set `model`'s variables from the checkpoint at `rel`; returns its state."""
    return StageState.from_json(_read_checkpoint(store, rel, model, None))


def restore_checkpoint(
    store: ArtifactStore, rel: str, model: keras.Model, optimizer: keras.optimizers.Optimizer
) -> StageState:
    """Set `model`, a built `optimizer` and the global TF RNG from the checkpoint at `rel`; returns its state."""
    data = _read_checkpoint(store, rel, model, optimizer)
    tf.random.get_global_generator().reset(np.asarray(data["tf_rng"], dtype=np.int64))
    return StageState.from_json(data)


def _checkpoint_folders(store: ArtifactStore, stage: str) -> tuple[list[str], list[str]]:
    """Store paths of the checkpoint folders of `stage`, oldest first: (complete ones, incomplete ones)."""
    files: dict[str, set[str]] = {}
    for path in store.list(f"{stage}/checkpoints"):
        parts = path.split("/")
        if len(parts) == 4 and _NAME.match(parts[2]):
            files.setdefault("/".join(parts[:3]), set()).add(parts[3])
    complete = sorted(name for name, held in files.items() if STATE_FILE in held)
    return complete, sorted(set(files) - set(complete))


def list_checkpoints(store: ArtifactStore, stage: str) -> list[str]:
    """Store paths of the complete checkpoints of `stage` (those with a state.json), oldest first."""
    return _checkpoint_folders(store, stage)[0]


def prune_checkpoints(store: ArtifactStore, stage: str, keep: int, current: str) -> list[str]:
    """Delete all but the newest `keep` checkpoints of `stage`, never `current`; returns what went.

    Folders without a state.json go too: what a save cut short by an outage left (nothing pointed at them).
    """
    complete, incomplete = _checkpoint_folders(store, stage)
    doomed = [n for n in complete[: max(0, len(complete) - keep)] + incomplete if n != current]
    for name in doomed:
        store.delete_tree(name)
    return doomed
