"""Run folders written the way the trainer writes them, without training: for the runs table and the report.

`make_run` writes run.yaml (a real resolved RunConfig), provenance.json, latest.json, each stage's
newest checkpoint (state.json plus a weights.npz that no reader of small files may touch),
metrics.jsonl with one line per epoch, and grids every `images_every` epochs. The figures are a
seeded function of the epoch, so tests can predict them.
"""

from __future__ import annotations

import functools
import io
import math
from typing import Any

import numpy as np
from PIL import Image

from argomlops.config import RunConfig
from argomlops.trainer.storage import ArtifactStore

STEPS_PER_EPOCH = 10


def psnr_at(epoch: int) -> float:
    """The synthetic validation PSNR of an epoch: rises with training."""
    return 18.0 + 6.0 * (1.0 - math.exp(-epoch / 10.0))


def bits_at(epoch: int) -> float:
    """The synthetic validation bits per code of an epoch: falls with training."""
    return 6.0 - 2.0 * (1.0 - math.exp(-epoch / 8.0))


@functools.cache
def grid_png(seed: int, size: tuple[int, int] = (520, 262)) -> bytes:
    """A smooth, photo-like grid picture (low-frequency noise scaled up), seeded."""
    rng = np.random.default_rng(seed)
    small = (rng.random((size[1] // 16, size[0] // 16, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _record(stage: str, epoch: int) -> dict[str, Any]:
    loss = 1.0 / (1.0 + epoch)
    record: dict[str, Any] = {"stage": stage, "epoch": epoch, "step": epoch * STEPS_PER_EPOCH}
    if stage == "vqvae":
        record.update(train_loss=loss, train_mse=loss * 0.8, train_perplexity=40.0 + epoch)
        record.update(val_loss=loss * 1.1, val_mse=loss * 0.9, val_perplexity=38.0 + epoch, val_psnr=psnr_at(epoch))
    else:
        record.update(train_loss=bits_at(epoch) * math.log(2), train_bits_per_code=bits_at(epoch) - 0.1)
        record.update(val_loss=bits_at(epoch) * math.log(2), val_bits_per_code=bits_at(epoch), val_accuracy=0.3)
    record.update(img_per_s=500.0, wall_s=2.0)
    return record


def make_run(
    root: ArtifactStore,
    run_id: str,
    *,
    epochs: dict[str, int] | None = None,
    done_epochs: dict[str, int] | None = None,
    last_exit: dict[str, Any] | str | None = "success",
    parent: str | None = None,
    evaluation: dict[str, Any] | None = None,
    images_every: int = 2,
    events: list[dict[str, Any]] | None = None,
    started: str | None = None,
    grid_size: tuple[int, int] = (520, 262),
) -> ArtifactStore:
    """Write a run folder `root/run_id` (see the module docstring); returns its store.

    `done_epochs` below `epochs` leaves a stage unfinished; `last_exit="success"` writes exit 0, None an
    open attempt, a dict the given `last_exit`.
    """
    epochs = epochs or {"vqvae": 8, "pixelcnn": 8}
    done_epochs = done_epochs if done_epochs is not None else dict(epochs)
    store = root.child(run_id)
    raw: dict[str, Any] = {"stages": list(epochs), "resumeFrom": parent, "training": {}}
    for stage, count in epochs.items():
        raw["training"][stage] = {"epochs": count, "imagesEvery": images_every, "stepsPerEpoch": STEPS_PER_EPOCH}
    store.write_text("run.yaml", RunConfig.model_validate(raw).to_yaml())
    latest: dict[str, Any] = {"run_id": run_id, "updated": "2026-11-27T10:00:00+00:00", "stages": {}}
    for stage, count in epochs.items():
        done = done_epochs.get(stage, 0)
        if done == 0:
            continue
        records = [_record(stage, e) for e in range(1, done + 1)]
        store.write_text(f"{stage}/metrics.jsonl", "".join(f"{_json(r)}\n" for r in records))
        best = min(records, key=lambda r: r["val_loss"])
        rel = f"{stage}/checkpoints/step-{done * STEPS_PER_EPOCH:08d}"
        state = {"stage": stage, "epoch": done, "step": done * STEPS_PER_EPOCH, "step_in_epoch": 0}
        store.write_json(f"{rel}/state.json", {**state, "best": best, "last": records[-1], "weights": []})
        store.write_bytes(f"{rel}/weights.npz", b"\0" * 4096)
        latest["stages"][stage] = {"checkpoint": rel, "done": done == count}
        folder = "reconstructions" if stage == "vqvae" else "samples"
        for epoch in range(1, done + 1):
            if epoch % images_every == 0 or epoch == count:
                # Four distinct pictures cycle: encoding one per epoch would make 128-epoch runs slow to write.
                store.write_bytes(f"{stage}/{folder}/epoch-{epoch:04d}.png", grid_png(epoch % 4, grid_size))
        if done == count:
            store.write_bytes(f"{stage}/model.keras", b"\0" * 4096)
    store.write_json("latest.json", latest)
    provenance: dict[str, Any] = {
        "run_id": run_id,
        "version": "0.1.0",
        "parent": parent,
        "started": started or f"{run_id[:10]}T{run_id[11:13]}:{run_id[14:16]}:{run_id[17:19]}+00:00",
        "attempts": 1 + len([e for e in events or [] if e.get("event") == "resumed"]),
        "host": "test-host",
        "accelerators": [],
        "events": events or [],
        "trained_seconds": 3723.0,
    }
    if last_exit != "missing":
        provenance["last_exit"] = {"code": 0, "at": "2026-11-27T11:00:00+00:00", "error": None}
        provenance["last_exit"] = provenance["last_exit"] if last_exit == "success" else last_exit
    store.write_json("provenance.json", provenance)
    if evaluation is not None:
        store.write_json("evaluation.json", evaluation)
    return store


def _json(record: dict[str, Any]) -> str:
    import json

    return json.dumps(record)
