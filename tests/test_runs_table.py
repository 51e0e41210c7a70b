"""`argomlops runs`: states, lineage, figures and the reads it makes, on a local root and on gs:// (emulator).

The run folders are written as the trainer writes them (tests/run_folders.py), checkpoints and grids
included, and every store call the table makes is recorded: it must read only small files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from run_folders import bits_at, make_run, psnr_at

from argomlops.cli import main
from argomlops.trainer.run_summary import judge_accuracy, lineage, read_run
from argomlops.trainer.runs_table import format_table, list_runs
from argomlops.trainer.storage import ArtifactStore, open_store

SMALL_FILES = ("run.yaml", "provenance.json", "latest.json", "evaluation.json", "state.json")


class CountingStore(ArtifactStore):
    """A store that records every call made through it (and its children) and refuses writes."""

    def __init__(self, inner: ArtifactStore, calls: list[tuple[str, str]]) -> None:
        self.inner, self.calls, self.uri = inner, calls, inner.uri

    def child(self, rel: str) -> ArtifactStore:
        return CountingStore(self.inner.child(rel), self.calls)

    def read_bytes(self, rel: str) -> bytes:
        self.calls.append(("read", f"{self.uri}/{rel}"))
        return self.inner.read_bytes(rel)

    def exists(self, rel: str) -> bool:
        self.calls.append(("exists", f"{self.uri}/{rel}"))
        return self.inner.exists(rel)

    def list(self, prefix: str = "") -> list[str]:
        self.calls.append(("list", f"{self.uri}/{prefix}"))
        return self.inner.list(prefix)

    def folders(self, prefix: str = "") -> list[str]:
        self.calls.append(("folders", f"{self.uri}/{prefix}"))
        return self.inner.folders(prefix)

    def download_file(self, rel: str, local: Path) -> None:
        raise AssertionError(f"downloaded {self.uri}/{rel}")

    def write_bytes(self, rel: str, data: bytes) -> None:
        raise AssertionError(f"wrote {self.uri}/{rel}")

    def append_bytes(self, rel: str, data: bytes) -> None:
        raise AssertionError(f"appended to {self.uri}/{rel}")

    def upload_file(self, local: Path, rel: str) -> None:
        raise AssertionError(f"uploaded {self.uri}/{rel}")

    def delete_tree(self, rel: str) -> None:
        raise AssertionError(f"deleted {self.uri}/{rel}")


FAILED = {"code": 1, "at": "2026-11-27T12:00:00+00:00", "error": "RuntimeError: disk on fire"}
STOPPED = {"code": 143, "at": "2026-11-27T12:00:00+00:00", "error": None}


def make_family(root: ArtifactStore) -> dict[str, str]:
    """Five runs, one of each state, three of them a lineage: grandparent <- parent <- child."""
    ids = {
        "grandparent": "2026-11-20_09h00m00s",
        "parent": "2026-11-21_09h00m00s",
        "child": "2026-11-22_09h00m00s",
        "running": "2026-11-23_09h00m00s",
        "failed": "2026-11-24_09h00m00s",
    }
    uri = {name: f"{root.uri}/{run_id}" for name, run_id in ids.items()}
    small: dict[str, Any] = {"images_every": 4, "grid_size": (32, 16)}
    make_run(root, ids["grandparent"], evaluation={"accuracy": {"mean": 0.61}}, **small)
    evaluation = {"accuracy": {"per_tag": {"a": 0.9, "b": 0.7}, "mean": 0.8}}
    make_run(root, ids["parent"], parent=uri["grandparent"], evaluation=evaluation, **small)
    partial = {"vqvae": 8, "pixelcnn": 3}
    make_run(root, ids["child"], parent=uri["parent"], done_epochs=partial, last_exit=STOPPED, **small)
    make_run(root, ids["running"], done_epochs={"vqvae": 5, "pixelcnn": 0}, last_exit=None, **small)
    make_run(root, ids["failed"], done_epochs={"vqvae": 2, "pixelcnn": 0}, last_exit=FAILED, **small)
    root.write_text("not-a-run/notes.txt", "a folder without run.yaml is no run")
    return ids


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return open_store(str(tmp_path / "runs"))
    return open_store(f"gs://{request.getfixturevalue('gcs_bucket')}/FAFA/artifacts")


def test_states_figures_and_lineage(root: ArtifactStore) -> None:
    ids = make_family(root)
    calls: list[tuple[str, str]] = []
    runs = {run.run_id: run for run in list_runs(CountingStore(root, calls))}
    assert sorted(runs) == sorted(ids.values())
    state = {name: runs[run_id].state for name, run_id in ids.items()}
    assert state == {
        "grandparent": "done",
        "parent": "done",
        "child": "stopped",
        "running": "running",
        "failed": "failed",
    }
    assert runs[ids["failed"]].error == "RuntimeError: disk on fire"
    child = runs[ids["child"]]
    assert [(s.name, s.epochs_done, s.epochs, s.done) for s in child.stages] == [
        ("vqvae", 8, 8, True),
        ("pixelcnn", 3, 8, False),
    ]
    # Best epochs: the synthetic validation loss falls every epoch, so the best is the last one done.
    assert child.psnr == pytest.approx(psnr_at(8)) and child.bits_per_code == pytest.approx(bits_at(3))
    # evaluation.json is optional and read leniently; the child has none.
    assert runs[ids["grandparent"]].accuracy == pytest.approx(0.61)
    assert runs[ids["parent"]].accuracy == pytest.approx(0.8)
    assert child.accuracy is None and runs[ids["running"]].bits_per_code is None
    # The lineage follows resumeFrom through the parents' own small files.
    chain = lineage(child)
    assert [getattr(p, "run_id", p) for p in chain] == [ids["parent"], ids["grandparent"]]
    # Only the root's folders were listed, never a file below a run; only small files were read.
    assert [kind for kind, _ in calls if kind in ("list", "folders")] == ["folders"]
    assert all(path.endswith(SMALL_FILES) for kind, path in calls if kind == "read"), calls


def test_table_sort_since_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = open_store(str(tmp_path / "runs"))
    ids = make_family(root)
    assert main(["runs", root.uri]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["RUN", "PARENT", "STAGES", "(epochs)"]
    child = next(line for line in table if line.startswith(ids["child"]))
    assert child.split()[:7] == [ids["child"], ids["parent"], "vqvae", "8/8", "pixelcnn", "3/8", "stopped"]
    assert any("failed: RuntimeError: disk on fire" in line for line in table)

    assert main(["runs", root.uri, "--json", "--sort", "bits", "--since", "2026-11-21"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert ids["grandparent"] not in [r["run_id"] for r in rows]
    # Lowest bits/code first; runs without a prior figure last.
    bits = [r["bits_per_code"] for r in rows]
    assert bits[:2] == sorted(bits[:2]) and bits[-2:] == [None, None]
    assert rows[0]["parent_id"] == ids["grandparent"] and rows[0]["stages"][1]["epochs_done"] == 8

    assert main(["runs", root.uri, "--since", ids["child"]]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [
        ids["child"],
        ids["running"],
        ids["failed"],
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--since", "last tuesday"], "--since: 'last tuesday' is not a date"), (["--sort", "loss"], "--sort: 'loss'")],
)
def test_bad_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["runs", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_two_hundred_runs_are_read_from_small_files_only(tmp_path: Path) -> None:
    root = open_store(str(tmp_path / "runs"))
    ids = [f"2026-10-{1 + i // 24:02d}_{i % 24:02d}h00m00s" for i in range(200)]
    first = Path(make_run(root, ids[0], grid_size=(32, 16)).uri)
    provenance = json.loads((first / "provenance.json").read_text())
    for run_id in ids[1:]:
        # Copies of the first run, renamed (make_run's atomic, fsynced writes would take most of the test).
        shutil.copytree(first, first.parent / run_id)
        (first.parent / run_id / "provenance.json").write_text(json.dumps({**provenance, "run_id": run_id}))
    calls: list[tuple[str, str]] = []
    started = time.monotonic()
    runs = list_runs(CountingStore(root, calls))
    seconds = time.monotonic() - started
    assert len(runs) == 200 and seconds < 10, seconds and {run.state for run in runs} == {"done"}
    reads = [path for kind, path in calls if kind == "read"]
    assert all(path.endswith(SMALL_FILES) for path in reads)
    assert not any(path.endswith((".png", ".npz", ".keras", ".jsonl")) for _, path in calls)
    # run.yaml, provenance, latest, evaluation (absent), two state.json: six reads a run, one listing.
    assert len(reads) == 6 * 200 and [kind for kind, _ in calls if kind != "read"] == ["folders"]
    assert len(format_table(runs).splitlines()) == 201


def test_runs_imports_no_tensorflow(tmp_path: Path) -> None:
    make_run(open_store(str(tmp_path)), "2026-11-20_09h00m00s", images_every=8, grid_size=(32, 16))
    code = (
        "import sys; from argomlops.cli import main; code = main(['runs', sys.argv[1]]);"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, code)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "False False 0"


@pytest.mark.parametrize(
    ("evaluation", "expected"),
    [
        ({"accuracy": {"per_tag": {"standing": 0.9}, "mean": 0.4}}, 0.4),
        ({"accuracy": None, "tag_shares": {"standing": 0.2}}, None),  # an unconditional prior's verdict
        ({"accuracy": 0.5}, None),
        ({"fd": 12.0}, None),
        ({"accuracy": "high"}, None),
        (None, None),
    ],
)
def test_judge_accuracy_reads_the_evaluation_mean_and_nothing_else(evaluation: Any, expected: float | None) -> None:
    assert judge_accuracy(evaluation) == (pytest.approx(expected) if expected is not None else None)


def test_a_folder_without_run_yaml_is_no_run(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "x"))
    store.write_text("provenance.json", "{}")
    assert read_run(store) is None
