"""What the trainer leaves for a person: report.html, how each attempt ended, ETAs, the newest grid, the bar.

Real training of the tiny VQ-VAE of test_train_vqvae.py (16 px demo images, a few steps) in this
process, read back with `argomlops runs`; one run in a pseudo-terminal for the live progress bar.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_train_vqvae import TINY, write_config

from argomlops.cli import main
from argomlops.trainer import stage as stage_module
from argomlops.trainer.run_summary import read_run
from argomlops.trainer.storage import open_store

EPOCH_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ vqvae epoch (\d+)/(\d+) step \d+ train_loss=\S+ .* wall_s=\S+ eta=(\S+)$"
)
TWO_EPOCHS = {"vqvae": {**TINY["training"]["vqvae"], "epochs": 2, "checkpointEvery": 1}}


@pytest.fixture(autouse=True)
def restore_sigterm() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def provenance(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "provenance.json").read_text())
    return data


@pytest.mark.slow
def test_a_run_writes_its_page_its_exit_and_plain_lines_with_an_eta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    newest = tmp_path / "outputs" / "newest.png"
    monkeypatch.setenv("ARGOMLOPS_NEWEST_IMAGES", str(newest))
    config = write_config(tmp_path, training=TWO_EPOCHS)
    assert main(["train", str(config), "--run-id", "2026-01-01_00h00m00s"]) == 0
    run = tmp_path / "runs/2026-01-01_00h00m00s"
    out = capsys.readouterr().out

    # Not a terminal: plain lines only, and every epoch line ends with the stage's ETA.
    assert "\x1b" not in out and "\r" not in out
    epochs = [m.groups() for m in map(EPOCH_LINE.match, out.splitlines()) if m]
    assert [(e[0], e[1]) for e in epochs] == [("1", "2"), ("2", "2")]
    assert re.fullmatch(r"\d+s|\d+m\d\ds", epochs[0][2]) and epochs[-1][2] == "0s"

    # The page is there and current; the attempt's end is recorded; the newest grid is the output artifact.
    page = (run / "report.html").read_text()
    assert "run 2026-01-01_00h00m00s" in page and "<svg" in page and 'class="state done"' in page
    last_exit = provenance(run)["last_exit"]
    assert last_exit["code"] == 0 and last_exit["error"] is None and provenance(run)["trained_seconds"] > 0
    assert newest.read_bytes() == (run / "vqvae/reconstructions/epoch-0002.png").read_bytes()
    summary = read_run(open_store(str(run)))
    assert summary is not None and summary.state == "done" and summary.psnr is not None


@pytest.mark.slow
def test_a_sigterm_reads_as_stopped_then_resumed_and_a_crash_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, training=TWO_EPOCHS)
    run = tmp_path / "runs/2026-01-01_00h00m00s"
    real_end_epoch = stage_module._Loop._end_epoch

    def preempt_after_epoch_one(self: Any, number: int, *args: Any) -> None:
        real_end_epoch(self, number, *args)
        if number == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler only sets the flag; the loop checkpoints

    monkeypatch.setattr(stage_module._Loop, "_end_epoch", preempt_after_epoch_one)
    assert main(["train", str(config), "--run-id", run.name]) == 143
    stopped = read_run(open_store(str(run)))
    assert stopped is not None and stopped.state == "stopped" and stopped.stages[0].epochs_done == 1
    assert provenance(run)["last_exit"]["code"] == 143
    assert [e["event"] for e in provenance(run)["events"]] == ["stopped"]

    # The next attempt resumes; meanwhile it reads as running (an open attempt), and then it crashes.
    def crash(self: Any) -> dict[str, float]:
        assert read_run(open_store(str(run))).state == "running"  # type: ignore[union-attr]
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(stage_module._Loop, "_end_epoch", real_end_epoch)
    monkeypatch.setattr(stage_module._Loop, "validate", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["train", str(config), "--run-id", run.name])
    failed = read_run(open_store(str(run)))
    assert failed is not None and failed.state == "failed" and failed.error == "RuntimeError: disk on fire"
    assert provenance(run)["last_exit"]["code"] == 1
    assert [e["event"] for e in provenance(run)["events"]] == ["stopped", "resumed"]
    # The failure rewrote the page: it says why, and marks the stop and the resume on the curves.
    page = (run / "report.html").read_text()
    assert 'class="state failed"' in page and "RuntimeError: disk on fire" in page
    assert "stopped (SIGTERM)" in page and "resumed" in page


@pytest.mark.slow
def test_on_a_terminal_train_shows_a_live_bar_with_the_eta(tmp_path: Path) -> None:
    config = write_config(tmp_path, training=TWO_EPOCHS)
    primary, secondary = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "argomlops.cli", "train", str(config), "--run-id", "2026-01-01_00h00m00s"]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    chunks = []
    while True:
        ready, _, _ = select.select([primary], [], [], 120)
        if not ready:
            process.kill()
            pytest.fail("no output for 120 s")
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert process.wait(timeout=60) == 0
    screen = b"".join(chunks).decode(errors="replace")
    # rich draws the bar with ANSI codes and redraws it in place; the log lines still come through.
    assert "\x1b[" in screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert re.search(r"vqvae epoch 2/2 ━+ 12/12 steps \d:\d\d:\d\d eta \d:\d\d:\d\d", plain), plain[-2000:]
    assert re.search(r"Z vqvae epoch 2/2 step 12 train_loss=.* eta=0s\r?$", plain, re.MULTILINE)
