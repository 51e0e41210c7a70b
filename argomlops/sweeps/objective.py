"""A trial's objective from the files its run writes: `<stage>/metrics.jsonl` per epoch, `evaluation.json` at the end.

Both the operator (reading the bucket) and `argomlops sweep` (reading the run folder) hand the text of
those files to these functions, so a trial is scored and pruned the same way in the cluster and on a laptop.

- `epoch_values`: the metric at every epoch the stage logged (its pruning steps). metrics.jsonl holds one
  line per epoch; a run resumed after a stop first drops the lines past its checkpoint, so a later line
  for the same epoch is the one that counts.
- `final_value`: what scores a finished trial: the metric at the stage's last epoch (the epoch whose
  weights the run keeps in model.keras), or the evaluation figure.
"""

from __future__ import annotations

import json
import math
from typing import Any

from argomlops.config.sweep import Objective

EVALUATION_FILE = "evaluation.json"


class ObjectiveMissing(ValueError):
    """A finished run's files hold no value of the objective (a typo in the metric, a stage that did not run)."""


def metrics_file(objective: Objective) -> str:
    """The run-relative file the objective comes from."""
    return f"{objective.stage}/metrics.jsonl" if objective.per_epoch else EVALUATION_FILE


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def epoch_values(text: str | None, key: str) -> dict[int, float]:
    """`key` at each epoch of a metrics.jsonl text (unreadable lines and non-finite values are left out)."""
    values: dict[int, float] = {}
    for line in (text or "").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being appended right now: the next read has it whole
        if not isinstance(record, dict):
            continue
        epoch, value = record.get("epoch"), _number(record.get(key))
        if isinstance(epoch, int) and value is not None:
            values[epoch] = value
    return values


def metric_keys(text: str | None) -> list[str]:
    """The numeric keys the lines of a metrics.jsonl text have (to name them when the objective is missing)."""
    keys: set[str] = set()
    for line in (text or "").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            keys.update(k for k, v in record.items() if _number(v) is not None and k not in ("epoch", "step"))
    return sorted(keys)


def evaluation_value(text: str | None, path: str) -> float | None:
    """The figure at the dotted `path` of an evaluation.json text, or None."""
    try:
        node: Any = json.loads(text) if text else None
    except ValueError:
        return None
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return _number(node)


def final_value(objective: Objective, text: str | None, epochs: int) -> float:
    """The objective of a finished trial from the text of `metrics_file(objective)`.

    Raises:
        ObjectiveMissing: the file or the value is not there; the line says which and what there is.
    """
    where = metrics_file(objective)
    if text is None:
        raise ObjectiveMissing(f"the run has no {where}")
    if not objective.per_epoch:
        value = evaluation_value(text, objective.key)
        if value is None:
            raise ObjectiveMissing(f"{where} has no number at {objective.key}")
        return value
    values = epoch_values(text, objective.key)
    if epochs not in values:
        if not values:
            raise ObjectiveMissing(f"{where} has no {objective.key} (its metrics: {', '.join(metric_keys(text))})")
        raise ObjectiveMissing(f"{where} ends at epoch {max(values)}, not the stage's last ({epochs})")
    return values[epochs]
