"""How far a long command has got: an ETA for log lines, and a live bar when a person watches a terminal.

- `Pace` estimates the time left from the steps this process has taken so far (a resumed stage counts
  only the steps since the resume: the steps before it ran on another machine, perhaps another GPU).
- `terminal_progress(...)` is a live bar (rich, already installed with Keras) with the elapsed time and
  the ETA, shown only when stdout is a terminal. Anywhere else (Argo, CI, a pipe, a file) it is a no-op,
  so the plain log lines a pod prints stay exactly as they are: no ANSI codes, no carriage returns.
  While the bar is shown, rich prints every log line above it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


def format_eta(seconds: float | None) -> str:
    """`3h05m`, `4m07s`, `12s`, or `?` when unknown."""
    if seconds is None:
        return "?"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Pace:
    """Seconds left of `total` steps, from the pace of the steps taken since this object was made."""

    def __init__(self, done: int, total: int, clock: Any = time.monotonic) -> None:
        self.first, self.total, self.clock = done, total, clock
        self.started = clock()

    def eta(self, done: int) -> float | None:
        """Seconds until `total` at the pace so far; None before the first step."""
        taken = done - self.first
        if taken <= 0:
            return None
        return (self.clock() - self.started) / taken * max(0, self.total - done)


def stdout_is_terminal() -> bool:
    """Whether a person watches stdout in a terminal (not Argo, CI, a pipe or a file)."""
    return sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"


class Bar(Protocol):
    """What a command tells its progress display."""

    def update(self, completed: int, description: str | None = None) -> None:
        """Set how many units are done (and optionally what is happening)."""


class _NoBar:
    def update(self, completed: int, description: str | None = None) -> None:
        return None


class _RichBar:
    def __init__(self, progress: Any, task: Any) -> None:
        self.progress, self.task = progress, task

    def update(self, completed: int, description: str | None = None) -> None:
        if description is None:
            self.progress.update(self.task, completed=completed)
        else:
            self.progress.update(self.task, completed=completed, description=description)


@contextmanager
def terminal_progress(description: str, total: int, completed: int = 0, unit: str = "steps") -> Iterator[Bar]:
    """A live bar of `completed`/`total` `unit` with its ETA on a terminal; a no-op anywhere else."""
    if not stdout_is_terminal():
        yield _NoBar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    # transient: the bar disappears when the command ends, leaving only the log lines behind.
    # soft_wrap: a log line printed above the bar stays one line (the terminal wraps it, rich does not).
    console = Console(file=sys.stdout, soft_wrap=True)
    with Progress(*columns, console=console, transient=True, redirect_stdout=True) as progress:
        yield _RichBar(progress, progress.add_task(description, total=total, completed=completed))
