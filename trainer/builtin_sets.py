"""Building a built-in data set once into the cache, safely when several processes build it at once."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

METADATA_NAME = "metadata.jsonl"
"""Every built-in set's metadata file: one JSON object per image, `file` and `tags`; written last."""


def build_once(root: Path, build: Callable[[Path], int]) -> int | None:
    """Make `root` with `build(folder) -> images` unless it is complete; returns the count, None if it was.

    The set is built in a hidden folder beside `root` and renamed into place, so a half-built set is never
    seen as complete; a process that loses the race to another one drops its identical copy.
    """
    if (root / METADATA_NAME).is_file():
        return None
    root.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
    try:
        count = build(building)
        os.chmod(building, 0o755)  # nosec B103 # public images; mkdtemp made it 0700, mkdir would make 0755
        try:
            os.rename(building, root)
        except OSError:
            if not (root / METADATA_NAME).is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return count
