"""Where the project's console scripts are: beside the running interpreter, else on PATH.

The suite runs in whatever virtual environment the project is installed into (`.venv`, a CI runner's,
a developer's own), so nothing names `.venv/bin/...`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_executable(name: str) -> str | None:
    """The path of console script `name` of this environment, or on PATH; None when there is none."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def executable(name: str) -> str:
    """Like `find_executable`, but a missing script is an error naming the extra that installs it."""
    found = find_executable(name)
    if found is None:
        raise FileNotFoundError(f"{name}: not beside {sys.executable} nor on PATH; pip install -e '.[dev]'")
    return found
