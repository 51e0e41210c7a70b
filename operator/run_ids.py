"""Run ids the operator issues: unique per artifacts root, not only per MLOps object.

A run writes `<artifacts>/<run-id>/`, and the run id is the UTC second the run starts. Two MLOps objects
with the same artifacts root that start a run in the same second (a sweep starting its trials does) would
get the same id and write into one folder. The operator therefore remembers, per root, the ids it issued
in the last minutes, and a second run in the same second gets the `-2` suffix (as a second run of one
object does). The memory is the process's, not kopf's memo (each object gets its own copy of that), and
handlers run in threads, so issuing takes a lock. After a restart the memory is empty, but every id
issued from then on is of a later second than any issued before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import datetime

from argomlops.runid import new_run_id

REMEMBER_SECONDS = 300.0
_lock = threading.Lock()
_issued: dict[str, dict[str, float]] = {}
"""Per artifacts root, the run ids issued lately and when (monotonic seconds)."""


def issue_run_id(root: str, now: datetime, taken: Iterable[str]) -> str:
    """A run id for a run starting `now` under `root`: not in `taken`, nor issued under `root` lately."""
    with _lock:
        recent = _issued.setdefault(root, {})
        clock = time.monotonic()
        for old in [run_id for run_id, at in recent.items() if clock - at > REMEMBER_SECONDS]:
            del recent[old]
        run_id = new_run_id(now, [*taken, *recent])
        recent[run_id] = clock
        return run_id
