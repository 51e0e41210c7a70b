"""Run ids: the UTC start time as `YYYY-MM-DD_HHhMMmSSs`, unique per MLOps object."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

RUN_ID_FORMAT = "%Y-%m-%d_%Hh%Mm%Ss"
RUN_ID_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}h\d{2}m\d{2}s(-\d+)?$")


def new_run_id(now: datetime | None = None, taken: Iterable[str] = ()) -> str:
    """The run id for a run starting at `now` (UTC); a collision within one second gets `-2`, `-3`, ..."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    base = moment.strftime(RUN_ID_FORMAT)
    used = set(taken)
    if base not in used:
        return base
    n = 2
    while f"{base}-{n}" in used:
        n += 1
    return f"{base}-{n}"


def is_run_id(text: str) -> bool:
    """Whether `text` is shaped like a run id."""
    return bool(RUN_ID_PATTERN.match(text))
