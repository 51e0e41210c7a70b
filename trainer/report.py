"""report.html: one self-contained page of a run, or of several runs side by side.

    argomlops report RUN [RUN ...] --out FILE      (each RUN local or gs://; FILE local or gs://)

The trainer writes `<run>/report.html` itself (`report_schedule.py`). The page holds, for one run:
its state, times, attempts, cost and host; the lineage through resumeFrom, each parent linked to its
own page; the curves of every metric of both stages per epoch, stops and resumes marked
(`report_plots.py`); the reconstruction grids over the epochs and the samples (`report_images.py`);
evaluation.json as a table; the resolved config. For several runs: their curves overlaid, their
newest pictures side by side, and the config keys that differ between them ("what changed").

Self-contained: curves are inline SVG, pictures data: URIs, the style inline, and no script at all. A
Content-Security-Policy forbids every fetch, so the page opens the same from a bucket, a laptop
without network, or the Argo UI's artifact viewer.
"""

from __future__ import annotations

import argparse
import html
import json
import os
from pathlib import Path
from typing import Any

import yaml

from argomlops.errors import InputError
from argomlops.trainer.report_images import GRID_DIRS, Grid, run_grids
from argomlops.trainer.report_plots import Series, curves_svg, resumes_from_metrics
from argomlops.trainer.run_summary import RunSummary, lineage, read_run, run_id_of
from argomlops.trainer.storage import GS_SCHEME, ArtifactStore, open_store, split_gs_uri

REPORT_FILE = "report.html"
STAGES = ("vqvae", "pixelcnn")
CONSOLE = "https://storage.cloud.google.com"
"""Where a browser opens a gs:// object with the viewer's Google login (links to runs in a bucket)."""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1180px;
padding:0 1rem;color:#1b1b1b;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.8rem 0 .6rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin:1rem 0 .4rem}table{border-collapse:collapse;margin:.4rem 0}
td,th{border:1px solid #ddd;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f5f5f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:.1rem .5rem;border-radius:.6rem;color:#fff;font-weight:600}
.done{background:#2e7d32}.running{background:#1565c0}.stopped{background:#ef6c00}.failed{background:#c62828}
.muted{color:#666}pre{background:#f7f7f7;padding:.7rem;overflow:auto;font-size:12px}
figure{margin:.3rem;display:inline-block;vertical-align:top}figcaption{font-size:12px;color:#444}
.thumbs{display:flex;flex-wrap:wrap;gap:.2rem}img{max-width:100%;height:auto;image-rendering:auto}
svg{max-width:100%;height:auto}.diff td.changed{background:#fff4e0}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value if value is not None else "-")
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def href(run_uri: str, page_dir: str | None) -> str:
    """A link to the page of the run at `run_uri`, from a page in folder `page_dir` (None: absolute)."""
    if run_uri.startswith(GS_SCHEME):
        bucket, key = split_gs_uri(run_uri)
        if page_dir and page_dir.startswith(GS_SCHEME) and split_gs_uri(page_dir)[0] == bucket:
            return os.path.relpath(f"/{key}/{REPORT_FILE}", f"/{split_gs_uri(page_dir)[1]}")
        return f"{CONSOLE}/{bucket}/{key}/{REPORT_FILE}"
    target = Path(run_uri).resolve() / REPORT_FILE
    if page_dir and not page_dir.startswith(GS_SCHEME):
        return os.path.relpath(target, Path(page_dir).resolve())
    return target.as_uri()


def read_metrics(store: ArtifactStore, stage: str) -> list[dict[str, Any]]:
    """The metrics.jsonl lines of `stage` (empty when the stage never finished an epoch)."""
    try:
        text = store.read_text(f"{stage}/metrics.jsonl")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _series(run: RunSummary, stage: str, records: list[dict[str, Any]]) -> Series:
    events = [e for e in run.provenance.get("events") or [] if isinstance(e, dict) and e.get("stage") == stage]

    def where(event: dict[str, Any]) -> float:
        steps = max(1, int(event.get("steps_per_epoch") or 1))
        return float(event.get("epoch", 0)) + float(event.get("step_in_epoch", 0)) / steps

    stops = [where(e) for e in events if e.get("event") == "stopped"]
    resumes = [where(e) for e in events if e.get("event") == "resumed"]
    if not events:
        resumes = resumes_from_metrics(records)
    return Series(run.run_id, records, stops, resumes)


def _state(run: RunSummary) -> str:
    return f'<span class="state {_e(run.state)}">{_e(run.state)}</span>'


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _facts(run: RunSummary) -> list[tuple[str, str]]:
    provenance = run.provenance
    stages = ", ".join(f"{s.name} {s.epochs_done}/{s.epochs or '?'}{' done' if s.done else ''}" for s in run.stages)
    return [
        ("state", _state(run) + (f" {_e(run.error)}" if run.error else "")),
        ("stages (epochs)", _e(stages or "-")),
        ("started", _e(run.started or "-")),
        ("ended", _e(run.ended or "-")),
        ("last checkpoint", _e(run.updated or "-")),
        ("attempts", _e(run.attempts if run.attempts is not None else "-")),
        ("time trained", _e(_duration(run.trained_seconds))),
        ("cost (USD)", _e("-" if run.cost_usd is None else f"{run.cost_usd:.2f}")),
        ("best PSNR (dB)", _num(run.psnr)),
        ("best perplexity", _num(run.perplexity)),
        ("best bits/code", _num(run.bits_per_code)),
        ("judge accuracy", _num(run.accuracy)),
        ("host", _e(provenance.get("host") or "-")),
        ("accelerators", _e(", ".join(provenance.get("accelerators") or []) or "CPU")),
        ("version", _e(f"{provenance.get('version', '-')} (git {provenance.get('git_sha') or 'unknown'})")),
        ("artifacts", _e(run.uri)),
    ]


def _facts_table(runs: list[RunSummary]) -> str:
    rows = [_facts(run) for run in runs]
    head = "".join(f"<th>{_e(run.run_id)}</th>" for run in runs) if len(runs) > 1 else ""
    body = []
    for i, (name, _) in enumerate(rows[0]):
        cells = "".join(f"<td>{row[i][1]}</td>" for row in rows)
        body.append(f"<tr><th>{_e(name)}</th>{cells}</tr>")
    return f"<table>{'<tr><th></th>' + head + '</tr>' if head else ''}{''.join(body)}</table>"


def _lineage(run: RunSummary, page_dir: str | None) -> str:
    items = [f"<b>{_e(run.run_id)}</b>"]
    for parent in lineage(run):
        if isinstance(parent, str):
            items.append(f'<span class="muted">{_e(run_id_of(parent))} (not readable: {_e(parent)})</span>')
        else:
            link = href(parent.uri, page_dir)
            items.append(f'<a href="{_e(link)}">{_e(parent.run_id)}</a> {_state(parent)}')
    if len(items) == 1:
        return f"<p>{items[0]}: a run from scratch (no resumeFrom).</p>"
    return "<p>" + " &larr; ".join(items) + '</p><p class="muted">each run started from the weights of the next</p>'


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as `a.b.c` keys; lists of scalars kept as they are."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _keyed_table(columns: list[str], flats: list[dict[str, Any]], mark_changed: bool = False) -> str:
    keys = sorted(set().union(*flats))
    head = "<tr><th></th>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>"
    rows = []
    for key in keys:
        values = [flat.get(key) for flat in flats]
        changed = mark_changed and len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1
        cls = ' class="changed num"' if changed else ' class="num"'
        rows.append(f"<tr><th>{_e(key)}</th>" + "".join(f"<td{cls}>{_num(v)}</td>" for v in values) + "</tr>")
    return f'<table class="diff">{head}{"".join(rows)}</table>'


def config_differences(configs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The config keys (dotted) whose values differ between runs, with each run's value."""
    flats = [flatten(config) for config in configs]
    keys = sorted(set().union(*flats))
    return {k: [f.get(k) for f in flats] for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1}


def _pictures(grids: list[Grid], what: str) -> str:
    if not grids:
        return f'<p class="muted">No {what} yet.</p>'
    newest, older = grids[-1], grids[:-1]
    parts = [
        f'<figure><img src="{newest.uri}" width="{newest.width}" height="{newest.height}" '
        f'alt="{_e(what)}, epoch {newest.epoch}"><figcaption>epoch {newest.epoch} (newest)</figcaption></figure>'
    ]
    if older:
        thumbs = "".join(
            f'<figure><img src="{g.uri}" width="{g.width}" height="{g.height}" alt="{_e(what)}, epoch {g.epoch}">'
            f"<figcaption>epoch {g.epoch}</figcaption></figure>"
            for g in older
        )
        parts.append(f'<h3>Over the epochs</h3><div class="thumbs">{thumbs}</div>')
    return "".join(parts)


def _newest_side_by_side(runs: list[RunSummary], grids: list[dict[str, list[Grid]]], stage: str) -> str:
    cells = []
    for run, by_stage in zip(runs, grids, strict=True):
        newest = by_stage.get(stage, [])[-1:] or []
        body = (
            f'<img src="{newest[0].uri}" width="{newest[0].width}" height="{newest[0].height}" alt="{_e(run.run_id)}">'
            if newest
            else '<span class="muted">none</span>'
        )
        epoch = f", epoch {newest[0].epoch}" if newest else ""
        cells.append(f"<figure>{body}<figcaption>{_e(run.run_id)}{epoch}</figcaption></figure>")
    return "".join(cells)


def _not_here(run: RunSummary, stage: str) -> str:
    """Why a stage has nothing on this run's page when the run does not train it; "" when it does."""
    if stage in (run.config.get("stages") or STAGES):
        return ""
    parent = run.config.get("resumeFrom")
    return f"not trained in this run, its weights come from {parent}" if parent else "not in this run's stages"


def build_report(stores: list[ArtifactStore], page_dir: str | None = None) -> str:
    """The HTML page of the runs in `stores` (one run: its own page; several: compared).

    `page_dir` is the folder the page will be written to, so links to other runs' pages are relative
    where they can be. Raises InputError when a store holds no run (no run.yaml).
    """
    runs = []
    for store in stores:
        run = read_run(store)
        if run is None:
            raise InputError(f"{store.uri}: not a run folder (no run.yaml)")
        runs.append(run)
    single = len(runs) == 1
    metrics = [{stage: read_metrics(store, stage) for stage in STAGES} for store in stores]
    grid_count = 10 if single else 1
    grids = [{stage: run_grids(store, stage, grid_count) for stage in STAGES} for store in stores]
    title = f"run {runs[0].run_id}" if single else f"{len(runs)} runs: " + ", ".join(r.run_id for r in runs)
    out = [f"<h1>argomlops {_e(title)}</h1>"]
    out.append(f"<h2>Summary</h2>{_facts_table(runs)}")
    out.append("<h2>Lineage</h2>" + "".join(_lineage(run, page_dir) for run in runs))
    if not single:
        differences = config_differences([run.config for run in runs])
        columns = [run.run_id for run in runs]
        table = _keyed_table(columns, [{k: v[i] for k, v in differences.items()} for i in range(len(runs))], True)
        out.append(f"<h2>What changed between these runs</h2>{table if differences else '<p>Same config.</p>'}")
    out.append("<h2>Curves</h2>")
    for stage in STAGES:
        series = [_series(run, stage, m[stage]) for run, m in zip(runs, metrics, strict=True) if m[stage]]
        svg = curves_svg(f"{stage}: per epoch", series) if series else ""
        absent = (_not_here(runs[0], stage) if single else "") or "no epoch finished yet"
        out.append(svg or f'<p class="muted">{stage}: {_e(absent)}.</p>')
    out.append("<h2>Pictures</h2>")
    for stage in STAGES:
        what = "reconstructions (input | reconstruction)" if stage == "vqvae" else "samples from the prior"
        out.append(f"<h3>{stage}: {what}</h3>")
        if single and _not_here(runs[0], stage) and not grids[0][stage]:
            out.append(f'<p class="muted">{stage}: {_e(_not_here(runs[0], stage))}.</p>')
        elif single:
            out.append(_pictures(grids[0][stage], GRID_DIRS[stage]))
        else:
            out.append(_newest_side_by_side(runs, grids, stage))
    out.append("<h2>Evaluation</h2>")
    if any(run.evaluation for run in runs):
        out.append(_keyed_table([r.run_id for r in runs], [flatten(r.evaluation or {}) for r in runs]))
    else:
        out.append('<p class="muted">No evaluation.json (argomlops evaluate writes it).</p>')
    out.append("<h2>Config</h2>")
    for run in runs:
        config = yaml.safe_dump(run.config, sort_keys=False)
        out.append(f"<details{' open' if single else ''}><summary>{_e(run.run_id)}: run.yaml</summary>")
        out.append(f"<pre>{_e(config)}</pre></details>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n"
    )


def write_report(store: ArtifactStore) -> int:
    """Write `<run>/report.html` of the run in `store` (atomically: a reader sees the old page or the new).

    Returns:
        the page's size in bytes.
    """
    page = build_report([store], page_dir=store.uri).encode("utf-8")
    store.write_bytes(REPORT_FILE, page)
    return len(page)


def report_command(args: argparse.Namespace) -> int:
    """Write the page of `args.runs` to `args.out` (a local file or gs:// object); returns 0."""
    out: str = args.out
    parent, _, name = out.rstrip("/").rpartition("/")
    if not name:
        raise InputError(f"--out: {out!r} names no file")
    page_dir = parent or "."
    page = build_report([open_store(uri) for uri in args.runs], page_dir=page_dir)
    open_store(page_dir).write_text(name, page)
    print(f"wrote {out} ({len(page.encode()) / 1e6:.2f} MB, {len(args.runs)} run{'s' if len(args.runs) > 1 else ''})")
    return 0
