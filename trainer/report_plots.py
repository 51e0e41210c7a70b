"""The curves of report.html: every metric of a stage per epoch, as inline SVG drawn by matplotlib.

One figure per stage, one panel per metric (train_x dashed and val_x solid on the same panel), one
colour per run when several runs are overlaid. Stops (SIGTERM: a preemption or a budget stop) and
resumes are drawn as vertical lines where they happened within the epoch; a run from before those
events were recorded gets its mid-epoch resumes from metrics.jsonl's `resumed_at_step`.

SVG text stays text (`svg.fonttype: none`) instead of glyph outlines: a panel is a few kB, so a
128-epoch run's curves stay well under a megabyte, and the page needs no font file.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
NOT_METRICS = frozenset({"stage", "epoch", "step", "resumed_at_step"})
LAST = ("img_per_s", "wall_s")
"""Throughput and time: shown after the model's metrics."""
COLUMNS = 3


@dataclass
class Series:
    """One run's metrics.jsonl lines of a stage, and where it stopped and resumed (x in epochs)."""

    label: str
    records: list[dict[str, Any]]
    stops: list[float] = field(default_factory=list)
    resumes: list[float] = field(default_factory=list)


def metric_panels(series: list[Series]) -> list[str]:
    """The metric names of the panels (`loss`, `psnr`, ...: train_/val_ stripped), loss first."""
    names: set[str] = set()
    for one in series:
        for record in one.records:
            for key, value in record.items():
                if key not in NOT_METRICS and (isinstance(value, int | float) or value is None):
                    names.add(key.removeprefix("train_").removeprefix("val_"))
    ordered = sorted(names - {"loss", *LAST})
    return [n for n in ("loss",) if n in names] + ordered + [n for n in LAST if n in names]


def _values(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for record in records:
        if key in record and isinstance(record.get("epoch"), int | float):
            value = record[key]
            xs.append(float(record["epoch"]))
            ys.append(float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan)
    return xs, ys


def resumes_from_metrics(records: list[dict[str, Any]]) -> list[float]:
    """x positions of the mid-epoch resumes metrics.jsonl itself shows (`resumed_at_step`)."""
    found = []
    previous_step = 0
    for record in records:
        step, epoch = record.get("step"), record.get("epoch")
        if isinstance(record.get("resumed_at_step"), int) and isinstance(step, int) and isinstance(epoch, int):
            steps = max(1, step - previous_step)
            found.append(epoch - 1 + record["resumed_at_step"] / steps)
        previous_step = step if isinstance(step, int) else previous_step
    return found


def curves_svg(title: str, series: list[Series]) -> str:
    """An `<svg>` element with one panel per metric of `series`; empty when there is nothing to draw."""
    panels = metric_panels(series)
    if not panels:
        return ""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = math.ceil(len(panels) / COLUMNS)
    settings: Any = {"svg.fonttype": "none", "svg.hashsalt": "argomlops", "font.size": 8, "axes.titlesize": 9}
    with matplotlib.rc_context(settings):
        figure = Figure(figsize=(3.4 * COLUMNS, 2.3 * rows + 0.5), layout="constrained")
        axes = figure.subplots(rows, COLUMNS, squeeze=False).ravel()
        for ax, panel in zip(axes, panels, strict=False):
            _panel(ax, panel, series)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        handles = [Line2D([], [], color=COLOURS[i % len(COLOURS)], label=s.label) for i, s in enumerate(series)]
        handles += [
            Line2D([], [], color="grey", linestyle="--", label="train"),
            Line2D([], [], color="grey", linestyle="-", label="validation"),
        ]
        if any(s.stops for s in series):
            handles.append(Line2D([], [], color="#d62728", linestyle=":", label="stopped (SIGTERM)"))
        if any(s.resumes for s in series):
            handles.append(Line2D([], [], color="#2ca02c", linestyle="-.", label="resumed"))
        figure.suptitle(title, fontsize=10)
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


def _panel(ax: Any, panel: str, series: list[Series]) -> None:
    for i, one in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        for key, style in ((f"train_{panel}", "--"), (f"val_{panel}", "-"), (panel, "-")):
            xs, ys = _values(one.records, key)
            if xs:
                marker = "o" if len(xs) <= 20 else None
                ax.plot(xs, ys, linestyle=style, color=colour, linewidth=1.2, marker=marker, markersize=2.5)
        for x in one.stops:
            ax.axvline(x, color="#d62728", linestyle=":", linewidth=1)
        for x in one.resumes:
            ax.axvline(x, color="#2ca02c", linestyle="-.", linewidth=1)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(panel)
    ax.set_xlabel("epoch")
    ax.grid(True, linewidth=0.3, alpha=0.5)
