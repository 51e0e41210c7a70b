"""report.html: what the page of one run holds, the comparison of several, its size, and `argomlops report`.

Run folders come from tests/run_folders.py (written as the trainer writes them); the page is parsed
with the standard library's HTML parser, so the assertions are about elements, not substrings alone.
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from run_folders import make_run

from argomlops.cli import main
from argomlops.trainer.report import build_report, config_differences, href, write_report
from argomlops.trainer.report_images import MAX_GRIDS, spread
from argomlops.trainer.report_schedule import MAX_SHARE, ReportSchedule
from argomlops.trainer.storage import ArtifactStore, open_store

EVENTS = [
    {"event": "stopped", "stage": "pixelcnn", "epoch": 3, "step_in_epoch": 4, "steps_per_epoch": 10, "at": "t1"},
    {"event": "resumed", "stage": "pixelcnn", "epoch": 3, "step_in_epoch": 4, "steps_per_epoch": 10, "at": "t2"},
]
EVALUATION = {"accuracy": {"mean": 0.875, "standing": 0.93}, "fd": 12.5, "fd_floor": 6.25}


class Page(HTMLParser):
    """The elements of a page that the tests look at."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.headings: list[str] = []
        self._heading: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("h1", "h2", "h3"):
            self._heading = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append(self._heading.strip())
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading += data

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


@pytest.fixture
def family(tmp_path: Path) -> dict[str, ArtifactStore]:
    root = open_store(str(tmp_path / "runs"))
    parent = make_run(root, "2026-11-26_09h00m00s", epochs={"vqvae": 8, "pixelcnn": 8})
    child = make_run(
        root,
        "2026-11-27_09h00m00s",
        parent=parent.uri,
        done_epochs={"vqvae": 8, "pixelcnn": 5},
        last_exit={"code": 143, "at": "t1", "error": None},
        events=EVENTS,
        evaluation=EVALUATION,
    )
    raw = child.read_text("run.yaml").replace("learningRate: 0.0003", "learningRate: 0.001", 1)
    child.write_text("run.yaml", raw)
    return {"parent": parent, "child": child}


def test_the_page_of_one_run(family: dict[str, ArtifactStore]) -> None:
    child = family["child"]
    text = build_report([child], page_dir=child.uri)
    page = Page(text)
    first = ["argomlops run 2026-11-27_09h00m00s", "Summary", "Lineage", "Curves", "Pictures"]
    assert page.headings[:6] == [*first, "vqvae: reconstructions (input | reconstruction)"]
    assert {"Evaluation", "Config"} <= set(page.headings)
    # Self-contained: no script, every picture a data: URI, a CSP that forbids every fetch.
    assert not page.all("script") and not page.all("link")
    csp = [m for m in page.all("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert csp and csp[0]["content"] == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    images = page.all("img")
    assert images and all((i["src"] or "").startswith("data:image/") for i in images)
    # Reconstructions every 2 epochs of 8 (4) and samples of the 5 epochs done (epochs 2 and 4).
    assert len(images) == 4 + 2
    assert 'alt="samples, epoch 4"' in text and "epoch 8 (newest)" in text
    # Curves: one figure per stage, each with a panel per metric, the stop and the resume in the legend.
    assert text.count("<svg") == 2
    for panel in ("loss", "psnr", "perplexity", "bits_per_code", "accuracy", "img_per_s"):
        assert f">{panel}<" in text, panel
    assert "stopped (SIGTERM)" in text and ">resumed<" in text
    # Summary, lineage linked to the parent's own page, evaluation and the resolved config.
    assert 'class="state stopped"' in text and "pixelcnn 5/8" in text
    (link,) = [a for a in page.all("a")]
    assert link["href"] == "../2026-11-26_09h00m00s/report.html"
    assert re.search(r"<th>accuracy\.mean</th><td[^>]*>0\.875</td>", text)
    assert re.search(r"<th>fd_floor</th><td[^>]*>6\.25</td>", text)
    assert "learningRate: 0.001" in text and "time trained" in text and "1h02m" in text


def test_a_prior_only_run_says_where_its_vqvae_comes_from(family: dict[str, ArtifactStore]) -> None:
    parent = family["parent"]
    root = open_store(parent.uri.rsplit("/", 1)[0])
    prior = make_run(root, "2026-11-28_09h00m00s", epochs={"pixelcnn": 4}, parent=parent.uri)
    text = build_report([prior], page_dir=prior.uri)
    said = f"vqvae: not trained in this run, its weights come from {parent.uri}."
    assert text.count(said) == 2  # under Curves and under Pictures, instead of "no epoch finished yet"
    assert "vqvae: no epoch finished yet" not in text and text.count("<svg") == 1
    # A run that trains a stage but has not finished an epoch of it says so.
    assert "pixelcnn: no epoch finished yet." in build_report([make_run(root, "new", done_epochs={})])


def test_several_runs_overlay_and_show_what_changed(family: dict[str, ArtifactStore], tmp_path: Path) -> None:
    text = build_report([family["parent"], family["child"]], page_dir=str(tmp_path))
    page = Page(text)
    assert page.headings[0] == "argomlops 2 runs: 2026-11-26_09h00m00s, 2026-11-27_09h00m00s"
    assert "What changed between these runs" in page.headings
    # The changed keys only, each run's value side by side: resumeFrom and the learning rate.
    changed = re.findall(r'<tr><th>([^<]+)</th><td class="changed num">', text)
    assert changed == ["resumeFrom", "training.vqvae.learningRate"]
    assert set(changed) == set(config_differences([yaml_of(family["parent"]), yaml_of(family["child"])]))
    assert "training.vqvae.epochs" not in changed
    # Overlaid curves: both runs in each stage's legend; the newest pictures of both side by side.
    assert text.count("<svg") == 2
    assert text.count(">2026-11-26_09h00m00s<") >= 2 and text.count(">2026-11-27_09h00m00s<") >= 2
    assert len(page.all("img")) == 4
    # Links to the runs' pages are relative to where the page is written.
    assert 'href="runs/2026-11-26_09h00m00s/report.html"' in text


def yaml_of(store: ArtifactStore) -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load(store.read_text("run.yaml"))
    return data


def test_a_128_epoch_run_page_stays_small(tmp_path: Path) -> None:
    """The issue's bound: a 128-epoch run's page under a few MB (measured: printed with -s)."""
    epochs = {"vqvae": 128, "pixelcnn": 128}
    store = make_run(open_store(str(tmp_path)), "2026-11-27_09h00m00s", epochs=epochs, grid_size=(1028, 262))
    assert len(store.list("vqvae/reconstructions")) == 64
    started = time.monotonic()
    write_report(store)
    seconds = time.monotonic() - started
    size = len(store.read_bytes("report.html"))
    print(f"128-epoch page: {size / 1e6:.2f} MB, built in {seconds:.2f} s")
    assert size < 3_000_000
    assert len(Page(store.read_text("report.html")).all("img")) == 2 * MAX_GRIDS


def test_spread_keeps_first_and_last() -> None:
    items = [(e, f"e{e}") for e in range(2, 130, 2)]
    chosen = spread(items, 10)
    assert len(chosen) == 10 and chosen[0] == items[0] and chosen[-1] == items[-1]
    assert spread(items[:3], 10) == items[:3] and spread(items, 1) == items[-1:]


def test_links_to_runs_in_a_bucket() -> None:
    assert href("gs://b/FAFA/artifacts/r1", "gs://b/FAFA/artifacts/r2") == "../r1/report.html"
    assert href("gs://b/FAFA/r1", "gs://other/x") == "https://storage.cloud.google.com/b/FAFA/r1/report.html"
    assert href("gs://b/FAFA/r1", None) == "https://storage.cloud.google.com/b/FAFA/r1/report.html"


def test_report_command_writes_to_gcs_and_reads_runs_there(gcs_bucket: str, tmp_path: Path) -> None:
    root = open_store(f"gs://{gcs_bucket}/FAFA/artifacts")
    make_run(root, "2026-11-26_09h00m00s", epochs={"vqvae": 4, "pixelcnn": 2}, grid_size=(64, 32))
    run = f"{root.uri}/2026-11-26_09h00m00s"
    assert main(["report", run, "--out", f"gs://{gcs_bucket}/pages/one.html"]) == 0
    text = open_store(f"gs://{gcs_bucket}/pages").read_text("one.html")
    assert "run 2026-11-26_09h00m00s" in text and text.count("data:image/png;base64,") == 2 + 1
    assert main(["report", run, str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x.html")]) == 2
    assert not (tmp_path / "x.html").exists()


def test_the_schedule_rebuilds_after_checkpoints_only_when_cheap(tmp_path: Path) -> None:
    store = make_run(open_store(str(tmp_path)), "2026-11-27_09h00m00s", epochs={"vqvae": 2, "pixelcnn": 2})
    now = [100.0]
    schedule = ReportSchedule(clock=lambda: now[0])
    assert schedule.after_checkpoint(store)  # the first is always written (its cost is unknown)
    schedule.last_cost = 2.0  # say it took 2 s: the next is due 2 / MAX_SHARE = 40 s later
    now[0] += 2.0 / MAX_SHARE - 1
    assert not schedule.after_checkpoint(store)
    now[0] += 1
    assert schedule.after_checkpoint(store) and schedule.written == 2
    # A page that cannot be built is skipped with a line, never an exception.
    store.delete_tree("run.yaml")
    assert not schedule.write(store)
