"""The exceptions every part of argomlops raises, and the exit code each one means.

Exit 143 means "stopped cleanly; run the same command again and it resumes from the newest complete
checkpoint". Two causes share it, because the template must retry both the same way (workflows/retry.py):
SIGTERM (a spot preemption, a budget stop) after a checkpoint was written, and a bucket that stayed
unreachable for longer than the storage retries wait (`StorageUnavailable`), where nothing half-written
is ever pointed at: latest.json only moves after a checkpoint is complete, so a rerun resumes from the
last one that is. The log line says which of the two it was.
"""

from __future__ import annotations

EXIT_INVALID = 2  # bad config or input: never retried
EXIT_PREEMPTED = 143  # stopped by SIGTERM after a checkpoint, or storage unreachable: retried, resumes


class ArgomlopsError(Exception):
    """Base of all argomlops errors."""

    exit_code = 1


class InputError(ArgomlopsError):
    """Bad config or input data (an empty selection, a run without a model): exit 2, never retried."""

    exit_code = EXIT_INVALID


class Preempted(ArgomlopsError):
    """SIGTERM arrived and a checkpoint was written: exit 143 so the retry policy resumes the run."""

    exit_code = EXIT_PREEMPTED


class StorageUnavailable(ArgomlopsError):
    """The bucket kept failing past the storage retry deadline: exit 143, a rerun resumes from the last checkpoint."""

    exit_code = EXIT_PREEMPTED
