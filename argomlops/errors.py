"""The exceptions every part of argomlops raises, and the exit code each one means."""

from __future__ import annotations

EXIT_INVALID = 2  # bad config or input: never retried
EXIT_PREEMPTED = 143  # stopped by SIGTERM after a checkpoint: retried, resumes


class ArgomlopsError(Exception):
    """Base of all argomlops errors."""

    exit_code = 1


class InputError(ArgomlopsError):
    """Bad config or input data (an empty selection, a run without a model): exit 2, never retried."""

    exit_code = EXIT_INVALID


class Preempted(ArgomlopsError):
    """SIGTERM arrived and a checkpoint was written: exit 143 so the retry policy resumes the run."""

    exit_code = EXIT_PREEMPTED
