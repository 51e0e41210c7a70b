"""When the trainer rewrites `<run>/report.html`, so the bucket always holds a current page of the run.

At the end of every stage, always. After a checkpoint only when it is cheap, in time and in bytes:

- time: the time since the last rebuild is at least `1 / MAX_SHARE` times what the last rebuild took,
  so rebuilding never takes more than `MAX_SHARE` of the training time, whatever the run's size, the
  store's latency or the checkpoint interval (measured on 2 busy CPU cores: a 128-epoch run's page
  takes 1.5-3 s to build, so with checkpoints a minute or more apart every checkpoint refreshes it);
- bytes, in billed storage (gs://): the last page was at most `MAX_BYTE_SHARE` of what the run
  uploaded since it was written, so rewriting the page whole never adds more than that share to the
  bucket's traffic, however long the run (the bucket's bound, tests/test_gcs_usage.py).
Never during a SIGTERM checkpoint: those seconds belong to the checkpoint.

A page that cannot be built is logged and skipped: a side product must never end a run of days.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from argomlops.trainer.logs import log
from argomlops.trainer.storage import ArtifactStore

MAX_SHARE = 0.05
"""At most this share of the wall time goes to rebuilding the page after checkpoints."""
MAX_BYTE_SHARE = 0.1
"""At most this share of a run's uploads to billed storage are pages rewritten after checkpoints."""


class ReportSchedule:
    """Decides when to rebuild report.html and measures what each rebuild costs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last_cost: float | None = None
        self.last_done: float | None = None
        self.last_bytes = 0
        self.sent_at_last: int | None = None
        self.written = 0

    def due(self, store: ArtifactStore) -> bool:
        """Whether a rebuild now stays within `MAX_SHARE` of the time and `MAX_BYTE_SHARE` of the uploads."""
        if self.last_cost is None or self.last_done is None:
            return True
        if self.last_cost > MAX_SHARE * (self.clock() - self.last_done):
            return False
        sent = store.sent_bytes()
        if sent is None or self.sent_at_last is None:
            return True
        return self.last_bytes <= MAX_BYTE_SHARE * (sent - self.sent_at_last)

    def after_checkpoint(self, store: ArtifactStore) -> bool:
        """Rebuild the page when due; returns whether it did."""
        if not self.due(store):
            return False
        return self.write(store)

    def write(self, store: ArtifactStore) -> bool:
        """Rebuild the page of the run in `store` now; returns whether it was written."""
        from argomlops.trainer.report import write_report

        started = self.clock()
        try:
            self.last_bytes = write_report(store)
            self.sent_at_last = store.sent_bytes()
        except Exception as exc:  # a page is never worth a failed training run (module docstring)
            log(f"report: {store.uri}/report.html not written: {type(exc).__name__}: {exc}")
            return False
        finally:
            self.last_done = self.clock()
            self.last_cost = self.last_done - started
        self.written += 1
        return True
