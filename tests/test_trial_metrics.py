"""The operator's reads of a trial's result files: from the bucket (the GCS emulator here) or a local folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from argomlops.operator.trial_metrics import UnreadableRunFile, read_run_file


def test_reads_a_run_file_from_the_bucket_and_says_none_when_it_is_not_there(gcs_bucket: str) -> None:
    from argomlops.trainer.gcs_client import gcs_client

    gcs_client().bucket(gcs_bucket).blob("runs/r1/vqvae/metrics.jsonl").upload_from_string('{"epoch": 1}\n')
    assert read_run_file(f"gs://{gcs_bucket}/runs/r1", "vqvae/metrics.jsonl") == '{"epoch": 1}\n'
    assert read_run_file(f"gs://{gcs_bucket}/runs/r2", "vqvae/metrics.jsonl") is None


def test_a_bucket_that_does_not_answer_is_one_line_within_the_read_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from argomlops.operator import trial_metrics

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once the socket is closed
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(trial_metrics, "_client", None)
    monkeypatch.setattr(trial_metrics, "READ_RETRY_SECONDS", 1.0)
    with pytest.raises(UnreadableRunFile, match=r"^cannot read gs://bucket/runs/r1/evaluation\.json: "):
        read_run_file("gs://bucket/runs/r1", "evaluation.json")


def test_reads_a_local_run_folder(tmp_path: Path) -> None:
    (tmp_path / "r1" / "vqvae").mkdir(parents=True)
    (tmp_path / "r1" / "vqvae" / "metrics.jsonl").write_text("x\n")
    assert read_run_file(str(tmp_path / "r1"), "vqvae/metrics.jsonl") == "x\n"
    assert read_run_file(str(tmp_path / "r2"), "vqvae/metrics.jsonl") is None
    (tmp_path / "r1" / "evaluation.json").mkdir()
    with pytest.raises(UnreadableRunFile, match="cannot read"):
        read_run_file(str(tmp_path / "r1"), "evaluation.json")
