"""What one run folder says of itself, read from its small files only (never checkpoints or images).

`read_run(store)` reads, per run: run.yaml, provenance.json, latest.json, evaluation.json when it
exists, and the state.json of each stage's newest checkpoint (latest.json names it): a handful of
small files, whatever the run's size. From them:

- the state, one of
  - `done`: every stage of run.yaml is marked done in latest.json;
  - `running`: an attempt is open (provenance.json's `last_exit` is null);
  - `stopped`: the last attempt ended after a checkpoint (exit 143, a preemption or a budget stop, or
    exit 0 of a `--stage` run that left stages to do); rerunning resumes it;
  - `failed`: the last attempt ended with another code; `error` holds its one-line message;
  - a run from before `last_exit` was recorded reads as `running` until it is done.
  A process killed without SIGTERM (SIGKILL, a lost node) cannot write its end: its run reads as
  running until the next attempt, and `updated` tells how long ago it last checkpointed;
- per stage: epochs done of those configured, and the best epoch's metrics (lowest validation loss);
- the best validation figures: PSNR and perplexity of the VQ-VAE, bits per code of the prior, and
  the judge's accuracy from evaluation.json (`judge_accuracy`; every key of that file is optional);
- parent (resumeFrom), times, attempts, trained seconds and cost (`cost_usd`) when known.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from argomlops.trainer.stage_state import read_state
from argomlops.trainer.storage import ArtifactStore, open_store

STATES = ("done", "running", "stopped", "failed")
MAX_LINEAGE = 32
"""Parents followed at most (a loop of resumeFrom links, which nothing prevents, must end)."""


@dataclass
class StageSummary:
    """One stage of a run: how far it got and its best epoch."""

    name: str
    epochs_done: int = 0
    epochs: int | None = None
    done: bool = False
    best: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    """A run folder, summarised from its small files (module docstring)."""

    run_id: str
    uri: str
    state: str
    parent: str | None = None
    stages: list[StageSummary] = field(default_factory=list)
    started: str | None = None
    ended: str | None = None
    updated: str | None = None
    attempts: int | None = None
    error: str | None = None
    trained_seconds: float | None = None
    cost_usd: float | None = None
    psnr: float | None = None
    perplexity: float | None = None
    bits_per_code: float | None = None
    accuracy: float | None = None
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    provenance: dict[str, Any] = field(default_factory=dict, repr=False)
    evaluation: dict[str, Any] | None = field(default=None, repr=False)

    def stage(self, name: str) -> StageSummary | None:
        """The summary of stage `name`, if the run has it."""
        return next((s for s in self.stages if s.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The summary as `argomlops runs --json` prints it (config and provenance left out)."""
        data = asdict(self)
        for key in ("config", "provenance", "evaluation"):
            data.pop(key)
        data["parent_id"] = run_id_of(self.parent) if self.parent else None
        return data


def run_id_of(uri: str) -> str:
    """The last path part of a run URI: its run id."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _read_json(store: ArtifactStore, rel: str) -> Any:
    try:
        return json.loads(store.read_text(rel))
    except FileNotFoundError:
        return None


def judge_accuracy(evaluation: dict[str, Any] | None) -> float | None:
    """The judge's mean accuracy of generated images, `accuracy.mean` of evaluation.json, or None.

    trainer/evaluate.py writes that key; an unconditional prior's verdict has none (`accuracy: null`),
    and a file of another shape is no accuracy, never an error.
    """
    value = (evaluation or {}).get("accuracy") if isinstance(evaluation, dict) else None
    mean_value = value.get("mean") if isinstance(value, dict) else None
    return float(mean_value) if isinstance(mean_value, int | float) else None


def _stages(store: ArtifactStore, config: dict[str, Any], latest: dict[str, Any]) -> list[StageSummary]:
    entries = (latest or {}).get("stages", {}) or {}
    names = list(config.get("stages") or entries)
    summaries = []
    for name in names:
        entry = entries.get(name) or {}
        summary = StageSummary(name, epochs=((config.get("training") or {}).get(name) or {}).get("epochs"))
        summary.done = bool(entry.get("done"))
        if entry.get("checkpoint"):
            try:
                state = read_state(store, entry["checkpoint"])
            except FileNotFoundError:
                state = None  # pruned under us by a running attempt: the next read finds the new one
            if state is not None:
                summary.epochs_done, summary.best, summary.last = state.epoch, state.best, state.last
        summaries.append(summary)
    return summaries


def _state(stages: list[StageSummary], provenance: dict[str, Any]) -> tuple[str, str | None]:
    if stages and all(s.done for s in stages):
        return "done", None
    if "last_exit" not in provenance or provenance["last_exit"] is None:
        return "running", None
    last_exit = provenance["last_exit"] or {}
    if last_exit.get("code") in (0, 143):
        return "stopped", None
    return "failed", last_exit.get("error") or f"exit code {last_exit.get('code')}"


def _figure(record: dict[str, Any], key: str) -> float | None:
    value = record.get(key)
    return float(value) if isinstance(value, int | float) else None


def read_run(store: ArtifactStore) -> RunSummary | None:
    """The summary of the run folder `store`, or None when it holds no run.yaml (not a run)."""
    try:
        config = yaml.safe_load(store.read_text("run.yaml")) or {}
    except FileNotFoundError:
        return None
    provenance = _read_json(store, "provenance.json") or {}
    latest = _read_json(store, "latest.json") or {}
    evaluation = _read_json(store, "evaluation.json")
    stages = _stages(store, config, latest)
    state, error = _state(stages, provenance)
    vqvae = next((s for s in stages if s.name == "vqvae"), StageSummary("vqvae"))
    prior = next((s for s in stages if s.name == "pixelcnn"), StageSummary("pixelcnn"))
    cost = provenance.get("cost_usd")
    return RunSummary(
        run_id=str(provenance.get("run_id") or run_id_of(store.uri)),
        uri=store.uri,
        state=state,
        parent=provenance.get("parent") or config.get("resumeFrom"),
        stages=stages,
        started=provenance.get("started"),
        ended=provenance.get("ended"),
        updated=latest.get("updated"),
        attempts=provenance.get("attempts"),
        error=error,
        trained_seconds=provenance.get("trained_seconds"),
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        psnr=_figure(vqvae.best, "val_psnr"),
        perplexity=_figure(vqvae.best, "val_perplexity"),
        bits_per_code=_figure(prior.best, "val_bits_per_code"),
        accuracy=judge_accuracy(evaluation),
        config=config,
        provenance=provenance,
        evaluation=evaluation if isinstance(evaluation, dict) else None,
    )


def lineage(run: RunSummary) -> list[RunSummary | str]:
    """The run's ancestors through resumeFrom, parent first: a summary each, or the URI of one unreadable."""
    chain: list[RunSummary | str] = []
    seen = {run.uri}
    parent = run.parent
    while parent and parent not in seen and len(chain) < MAX_LINEAGE:
        seen.add(parent)
        found = read_run(open_store(parent))
        if found is None:
            chain.append(parent)
            break
        chain.append(found)
        parent = found.parent
    return chain
