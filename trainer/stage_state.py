"""Where a stage stands, as its newest checkpoint's state.json records it; readable without TensorFlow.

`StageState` is the one record of a stage's progress (see `checkpoint.py`, which writes it beside the
weights). It lives apart from the checkpoint code so that `argomlops runs` and `argomlops report`, which
read only small files, never import TensorFlow or Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from argomlops.trainer.storage import ArtifactStore

STATE_FILE = "state.json"


@dataclass
class StageState:
    """Where a stage stands: counters, and the metrics of its last and best epoch (metrics.jsonl lines)."""

    stage: str
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed (global within the stage)
    step_in_epoch: int = 0
    best: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        """What provenance.json records of the stage."""
        return {"epochs": self.epoch, "steps": self.step, "last": self.last, "best": self.best}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageState:
        """The state part of a state.json (which also holds variable paths and the RNG state)."""
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def read_state(store: ArtifactStore, rel: str) -> StageState:
    """The state of the checkpoint at `rel` (only its small state.json is read)."""
    return StageState.from_json(store.read_json(f"{rel}/{STATE_FILE}"))
