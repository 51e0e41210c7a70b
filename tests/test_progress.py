"""The ETA of log lines and the live bar: drawn on a terminal only, and never breaking a log line."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import sys
import termios

import pytest

from argomlops.trainer import progress
from argomlops.trainer.progress import Pace, format_eta, terminal_progress


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "?"), (0, "0s"), (59.4, "59s"), (61, "1m01s"), (3599, "59m59s"), (7380, "2h03m")]
)
def test_format_eta(seconds: float | None, text: str) -> None:
    assert format_eta(seconds) == text


def test_pace_counts_only_the_steps_taken_since_it_started() -> None:
    now = [100.0]
    pace = Pace(done=40, total=100, clock=lambda: now[0])  # resumed at step 40
    assert pace.eta(40) is None
    now[0] += 30.0  # 10 steps in 30 s: 3 s a step, 50 steps to go
    assert pace.eta(50) == pytest.approx(150.0)
    assert pace.eta(100) == 0.0


def test_not_a_terminal_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with terminal_progress("train", 10) as bar:
        bar.update(5, "train epoch 1/2")
        print("a plain line")
    assert capsys.readouterr().out == "a plain line\n"


def test_on_a_terminal_the_bar_draws_and_log_lines_stay_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))  # a 60-column terminal
    monkeypatch.setenv("TERM", "xterm")
    terminal = os.fdopen(secondary, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", terminal)
    line = "2026-12-01T15:00:00Z vqvae epoch 1/8 step 100 " + " ".join(f"m{i}=0.123" for i in range(14))
    assert progress.stdout_is_terminal()
    with terminal_progress("vqvae epoch 1/8", 200) as bar:
        bar.update(100)
        print(line)
        bar.update(200)
    terminal.close()
    # A pty hands its output over in pieces (about 4 KiB each); with the writing end closed, read
    # until Linux says EIO (no writer left), which is the end of what the bar drew.
    screen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    text = screen.decode()
    assert "\x1b[" in text and "━" in text and "200/200" in text
    # 150 characters on a 60-column terminal: rich must not cut the line (the terminal wraps it).
    assert line in text.replace("\r\n", "\n")
