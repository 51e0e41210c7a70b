"""The table of a sweep's trials: `argomlops sweep` prints it after every trial and at the end.

One row per trial: number, state, each parameter (headed by the last part of its path, the whole path
where two would read the same), the objective (the final value; a pruned trial's last reported one in
brackets), epochs reported, cost, and the run. The best complete trial is marked `*`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from argomlops.config.sweep import SweepSpec


@dataclass
class TrialRow:
    """What the table shows of one trial."""

    number: int
    state: str
    params: dict[str, Any]
    objective: float | None = None
    last_value: float | None = None
    epochs: int | None = None
    cost: float | None = None
    run: str | None = None
    note: str | None = None


def _headers(spec: SweepSpec) -> list[str]:
    paths = [p.path for p in spec.parameters]
    short = [path.rsplit(".", 1)[-1] for path in paths]
    return [s if short.count(s) == 1 else path for s, path in zip(short, paths, strict=True)]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _objective(row: TrialRow) -> str:
    if row.objective is not None:
        return f"{row.objective:.5g}"
    if row.last_value is not None:
        return f"({row.last_value:.5g})"
    return "-"


def format_table(spec: SweepSpec, rows: Sequence[TrialRow], best: int | None) -> list[str]:
    """The table's lines: a header, one line per trial (by number), nothing else."""
    headers = ["trial", "state", *_headers(spec), spec.objective.metric, "epochs", "cost", "run"]
    body = []
    for row in sorted(rows, key=lambda r: r.number):
        mark = "*" if row.number == best else " "
        cells = [f"{mark}{row.number}", row.state]
        cells += [_value(row.params.get(p.path, "-")) for p in spec.parameters]
        cells += [
            _objective(row),
            "-" if row.epochs is None else f"{row.epochs}/{spec.epochs}",
            "-" if row.cost is None else f"{row.cost:.4f}",
            (row.run or "-") + (f"  {row.note}" if row.note else ""),
        ]
        body.append(cells)
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers) - 1)]
    lines = []
    for cells in [headers, *body]:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False)) + "  " + cells[-1]
        )
    return [line.rstrip() for line in lines]


def summary_line(spec: SweepSpec, rows: Sequence[TrialRow], best: int | None, cost: float) -> str:
    """One line under the table: trials done of total, the best, and the spend against the budget."""
    done = sum(1 for row in rows if row.state in ("complete", "pruned", "failed"))
    pruned = sum(1 for row in rows if row.state == "pruned")
    budget = spec.budget.max_cost
    spent = f"cost {cost:.4f}" + (f" of {budget:g}" if budget is not None else "")
    found = next((row for row in rows if row.number == best), None)
    best_text = (
        f"best trial {found.number}: {spec.objective.metric} {found.objective:.5g}"
        if found is not None and found.objective is not None
        else "no trial complete yet"
    )
    return f"{done}/{spec.total_trials} trials done ({pruned} pruned); {best_text}; {spent}"
