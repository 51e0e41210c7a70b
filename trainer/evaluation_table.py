"""The plain-text table `argomlops evaluate` prints (no ANSI: it also ends up in pod logs)."""

from __future__ import annotations

from typing import Any

_HEADER = ("metric", "generated", "real", "note")


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _tag_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows of per-tag accuracy against the ceiling, or of tag shares, or why neither is there."""
    accuracy, ceiling, shares = result.get("accuracy"), result.get("ceiling") or {}, result.get("tag_shares")
    rows: list[tuple[str, ...]] = []
    if accuracy is not None:
        note = "generated: classified as the tag they were conditioned on; real: held-out images (ceiling)"
        for tag, value in accuracy["per_tag"].items():
            rows.append((f"accuracy {tag}", _number(value), _number(ceiling.get("per_tag", {}).get(tag)), note))
            note = ""
        rows.append(("accuracy (mean)", _number(accuracy["mean"]), _number(ceiling.get("mean")), ""))
    elif shares is not None:
        note = "share of images the judge gives each tag (unconditional prior)"
        real = shares.get("real") or {}
        for tag, value in shares["generated"].items():
            rows.append((f"share {tag}", _number(value), _number(real.get(tag)), note))
            note = ""
        rows.append(("judge held-out accuracy", "-", _number(ceiling.get("mean")), "the judge's ceiling"))
    else:
        rows.append(("accuracy", "-", "-", "unavailable: " + result["unavailable"].get("accuracy", "")))
    return rows


def _distance_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    frechet, pr = result.get("frechet"), result.get("precision_recall")
    rows: list[tuple[str, ...]] = []
    if frechet is None:
        rows.append(("Frechet distance", "-", "-", "unavailable: " + result["unavailable"]["frechet"]))
    else:
        m = frechet["sample_size"]
        note = f"real: two held-out halves (floor); ratio {_number(frechet['ratio'], 2)}; {m} vs {m} images"
        rows.append(("Frechet distance", _number(frechet["generated"]), _number(frechet["floor"]), note))
    if pr is None:
        rows.append(("precision / recall", "-", "-", "unavailable: " + result["unavailable"]["precision_recall"]))
    else:
        n = pr["sample_size"]
        rows.append((f"precision (k={pr['k']})", _number(pr["precision"]), "-", f"{n} vs {n} images"))
        rows.append((f"recall (k={pr['k']})", _number(pr["recall"]), "-", ""))
    return rows


def format_table(result: dict[str, Any]) -> str:
    """One table of an `evaluate_run` result: a title line, a header, one row per figure."""
    settings, judge = result["settings"], result["judge"]
    per = f"{settings['count']} images per tag" if settings["per_tag"] else f"{settings['count']} images"
    title = (
        f"evaluation of {result['run']}: {per} (seed {settings['seed']}, temperature {settings['temperature']}); "
        f"judge trained on {judge['train_images']} images{' (cached)' if judge['reused'] else ''}, "
        f"tags: {', '.join(judge['tags']) or 'none'}; {result['seconds']['total']:.1f} s"
    )
    rows = [
        _HEADER,
        *_tag_rows(result),
        *_distance_rows(result),
        ("reconstruction PSNR (dB)", "-", _number(result.get("reconstruction_psnr"), 2), "VQ-VAE on validation"),
        ("prior bits/code", "-", _number(result.get("bits_per_code")), "PixelCNN on validation (training without one)"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [title]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
