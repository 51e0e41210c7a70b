"""`argomlops runs URI`: a table of the runs under an artifacts root, local or gs://.

    argomlops runs gs://antfield/FAFA/artifacts [--json] [--sort KEY] [--since DATE]

Lists the root's folders (one level: `ArtifactStore.folders`, never the files below them), then reads
each run's small files (`run_summary.read_run`), several runs at a time: a bucket of 200 runs costs
one listing and a few small reads per run, no checkpoint and no image. Imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from argomlops.errors import InputError
from argomlops.runid import RUN_ID_FORMAT
from argomlops.trainer.run_summary import RunSummary, read_run, run_id_of
from argomlops.trainer.storage import ArtifactStore, open_store

READ_THREADS = 16
"""Runs read at once: each read is a few small requests, dominated by latency on gs://."""


def _number(attribute: str) -> Callable[[RunSummary], Any]:
    # Runs without the figure sort last, whichever way the figure sorts.
    return lambda run: (getattr(run, attribute) is None, getattr(run, attribute) or 0.0)


SORT_KEYS: dict[str, Callable[[RunSummary], Any]] = {
    "run": lambda run: run.run_id,
    "started": lambda run: run.started or "",
    "state": lambda run: (run.state, run.run_id),
    "parent": lambda run: (run.parent or "", run.run_id),
    "psnr": lambda run: (run.psnr is None, -(run.psnr or 0.0)),
    "perplexity": lambda run: (run.perplexity is None, -(run.perplexity or 0.0)),
    "bits": _number("bits_per_code"),
    "accuracy": lambda run: (run.accuracy is None, -(run.accuracy or 0.0)),
    "cost": _number("cost_usd"),
}
"""`--sort` keys; figures sort best first (PSNR, perplexity and accuracy high, bits and cost low)."""


def parse_since(text: str) -> datetime:
    """A `--since` date: `2026-11-27`, `2026-11-27T09:00[:00][Z|+01:00]` or a run id; UTC unless it says."""
    try:
        moment = datetime.strptime(re.sub(r"-\d+$", "", text), RUN_ID_FORMAT)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(
                f"--since: {text!r} is not a date (2026-11-27), a time (2026-11-27T09:00) or a run id"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _started(run: RunSummary) -> datetime | None:
    if run.started:
        try:
            moment = datetime.fromisoformat(run.started.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        return datetime.strptime(re.sub(r"-\d+$", "", run.run_id), RUN_ID_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def list_runs(root: ArtifactStore, *, since: datetime | None = None, sort: str = "run") -> list[RunSummary]:
    """Summaries of the runs directly under `root`, started at or after `since`, sorted by `sort`."""
    if sort not in SORT_KEYS:
        raise InputError(f"--sort: {sort!r} is not one of {', '.join(SORT_KEYS)}")
    names = root.folders()
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        found = [run for run in pool.map(lambda name: read_run(root.child(name)), names) if run is not None]
    if since is not None:
        found = [run for run in found if (started := _started(run)) is not None and started >= since]
    return sorted(found, key=SORT_KEYS[sort])


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _row(run: RunSummary) -> list[str]:
    stages = " ".join(f"{s.name} {s.epochs_done}/{s.epochs if s.epochs is not None else '?'}" for s in run.stages)
    state = run.state if run.error is None else f"{run.state}: {run.error[:60]}"
    return [
        run.run_id,
        run_id_of(run.parent) if run.parent else "-",
        stages or "-",
        state,
        _fmt(run.psnr),
        _fmt(run.perplexity),
        _fmt(run.bits_per_code),
        _fmt(run.accuracy),
        "-" if run.cost_usd is None else f"{run.cost_usd:.2f}",
        (run.started or "-").replace("+00:00", "Z"),
    ]


HEADER = ["RUN", "PARENT", "STAGES (epochs)", "STATE", "PSNR", "PERPLEXITY", "BITS/CODE", "ACCURACY", "COST", "STARTED"]


def format_table(runs: list[RunSummary]) -> str:
    """The runs as plain aligned columns (no ANSI: it goes to pipes and logs as well as terminals)."""
    rows = [HEADER, *(_row(run) for run in runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def runs_command(args: argparse.Namespace) -> int:
    """Print the table (or JSON) of the runs under `args.uri`; returns 0 (bad --since / --sort: exit 2)."""
    since = parse_since(args.since) if args.since else None
    runs = list_runs(open_store(args.uri), since=since, sort=args.sort)
    if args.json:
        print(json.dumps([run.to_json() for run in runs], indent=2))
    elif runs:
        print(format_table(runs))
    else:
        print(f"no runs under {args.uri}" + (f" since {args.since}" if since else ""))
    return 0
