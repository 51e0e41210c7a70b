"""What a run asks of the bucket, counted by a proxy in front of the GCS emulator, and a bucket that fails.

The trainer runs as a real process (`python -m argomlops.cli train`) whose `STORAGE_EMULATOR_HOST` is a
proxy (tests/gcs_proxy.py): every request it makes is seen, classified and, where a test asks, failed.

- A 100-epoch run uploads at most 1.2x the bytes of what it writes, a bounded number of uploads per
  epoch, and no object (metrics.jsonl, TensorBoard events) again and again as it grows; the trainer's
  own report of its requests equals what the proxy counted.
- Under a few per cent of failed requests and bursts of 503s, a run ends with the artifacts of a clean run.
- A bucket down for good ends the trainer with 143 (retried as a preemption) and a latest.json that
  names a complete checkpoint; once the bucket is back the run resumes from there.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from argo_expr import should_retry
from gcs_proxy import Faults, GCSProxy, ProxiedRequest

from argomlops.trainer.gcs_usage import operation_class
from argomlops.workflows.retry import PREEMPTION_EXPRESSION

RUN_ID = "2026-12-01_09h00m00s"
TINY_VQVAE = {"encoderChannels": [8], "residualBlocks": 0, "embeddingDim": 4, "numEmbeddings": 8}


def _config(tmp_path: Path, bucket: str, training: dict[str, Any], **extra: Any) -> Path:
    config = {
        "artifacts": f"gs://{bucket}/runs",
        "stages": ["vqvae"],
        "data": {"source": "builtin:demo", "imageSize": 8, "validationFraction": 0.0},
        "models": {"vqvae": TINY_VQVAE},
        "training": training,
        **extra,
    }
    path = tmp_path / f"run-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _env(endpoint: str, report: Path | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "STORAGE_EMULATOR_HOST": endpoint, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    if report is not None:
        env["ARGOMLOPS_REPORT_FILE"] = str(report)
    return {**env, **extra}


def _train(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "argomlops.cli", "train", str(config), "--run-id", RUN_ID]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def _new_bucket() -> str:
    from argomlops.trainer.gcs_client import gcs_client

    name = f"test-{uuid.uuid4().hex[:12]}"
    gcs_client().create_bucket(name)
    return name


def _objects(bucket: str, prefix: str) -> dict[str, bytes]:
    from argomlops.trainer.gcs_client import gcs_client

    return {b.name[len(prefix) :]: b.download_as_bytes() for b in gcs_client().list_blobs(bucket, prefix=prefix)}


@pytest.fixture
def proxy_for(gcs_emulator: str, gcs_bucket: str) -> Iterator[Any]:
    """A factory of proxies in front of the session's emulator (the test itself talks to the emulator)."""
    started: list[GCSProxy] = []

    def make(faults: Faults | None = None) -> GCSProxy:
        proxy = GCSProxy(gcs_emulator, faults).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.mark.parametrize(
    ("method", "url", "kind"),
    [
        ("POST", "/upload/storage/v1/b/b/o?uploadType=multipart", "A"),
        ("PUT", "/upload/storage/v1/b/b/o?uploadType=resumable&upload_id=x", "A"),
        ("GET", "/storage/v1/b/b/o?prefix=runs%2F", "A"),  # objects.list
        ("POST", "/storage/v1/b/b/o/runs%2Fm.jsonl/compose", "A"),
        ("POST", "/storage/v1/b/b/o/a/rewriteTo/b/b/o/c", "A"),
        ("PATCH", "/storage/v1/b/b/o/runs%2Fx", "A"),
        ("POST", "/storage/v1/b?project=p", "A"),  # buckets.insert
        ("GET", "/storage/v1/b/b/o/runs%2Flatest.json", "B"),  # metadata
        ("GET", "/download/storage/v1/b/b/o/runs%2Flatest.json?alt=media", "B"),
        ("GET", "/storage/v1/b/b", "B"),  # buckets.get
        ("DELETE", "/storage/v1/b/b/o/runs%2Fx", "free"),
    ],
)
def test_operation_classes_follow_the_price_list(method: str, url: str, kind: str) -> None:
    assert operation_class(method, url) == kind


def _shape(name: str) -> str:
    """An object name with its run-specific parts (steps, epochs, temp ids, event file stamps) blanked."""
    name = re.sub(r"step-\d+", "step-N", name)
    name = re.sub(r"epoch-\d+", "epoch-N", name)
    name = re.sub(r"\.tmp-[0-9a-f]+", ".tmp-X", name)
    return re.sub(r"tfevents\..*", "tfevents.X", name)


@pytest.mark.slow
def test_a_100_epoch_run_uploads_what_it_keeps_and_reports_what_it_asked(
    tmp_path: Path, gcs_bucket: str, proxy_for: Any, argomlops_cache: Path
) -> None:
    epochs = 100
    training = {
        "vqvae": {"epochs": epochs, "batchSize": 4, "stepsPerEpoch": 1, "checkpointEvery": 4, "imagesEvery": 25}
    }
    config = _config(tmp_path, gcs_bucket, training)
    proxy = proxy_for()
    report = tmp_path / "report.json"
    code, log = _finish(_train(config, _env(proxy.endpoint, report)))
    assert code == 0, log[-3000:]

    # 1. Bytes uploaded stay those of what was written: no file is sent whole again as it grows.
    final = proxy.final_sizes()
    uploaded = proxy.uploaded_bytes()
    assert uploaded <= 1.2 * sum(final.values()), (uploaded, sum(final.values()))
    sent: Counter[str] = Counter()
    for record in proxy.uploads():
        sent[record.object or "?"] += record.payload
    for name, size in final.items():
        # latest.json is rewritten at each checkpoint but does not grow; a file sent whole as it grows
        # sends about epochs/2 times its final size.
        assert sent[name] <= 3 * size + 64 * 1024, (name, sent[name], size)
    growing = [f"runs/{RUN_ID}/vqvae/metrics.jsonl", *[n for n in final if "tfevents" in n]]
    for name in growing:
        assert sent[name] <= final[name], f"{name} was uploaded whole again: {sent[name]} bytes for {final[name]}"

    # 2. A bounded number of uploads per epoch, the same in the last epochs as in the first.
    uploads = proxy.uploads()
    assert len(uploads) / epochs <= 6, Counter(_shape(r.object or "?") for r in uploads).most_common(8)
    by_shape = Counter(_shape(r.object or "?") for r in uploads)
    assert by_shape[f"runs/{RUN_ID}/vqvae/.metrics.jsonl.tmp-X"] == epochs - 1  # one appended line per epoch

    # 3. The trainer's report counts exactly what the bucket saw, and the run folder's size.
    written = json.loads(report.read_text())
    assert written["checkpoint"] == f"vqvae/checkpoints/step-{epochs:08d}" and written["step"] == epochs
    counts = proxy.counts()
    assert (written["gcs"]["classA"], written["gcs"]["classB"], written["gcs"]["free"]) == (
        counts["A"],
        counts["B"],
        counts["free"],
    )
    kept = _objects(gcs_bucket, f"runs/{RUN_ID}/")
    assert written["gcs"]["storedBytes"] == sum(len(data) for data in kept.values())
    assert len({n.split("/")[2] for n in kept if n.startswith("vqvae/checkpoints/")}) == 2


def _npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16)


TIMING = {"wall_s", "img_per_s"}


def _same_artifacts(clean: dict[str, bytes], faulty: dict[str, bytes], clean_bucket: str, faulty_bucket: str) -> None:
    """The two runs wrote the same objects with the same content, up to times, hosts and bucket names."""
    assert sorted(map(_shape, clean)) == sorted(map(_shape, faulty))
    for name, data in clean.items():
        if "tfevents" in name:
            continue  # named after the wall time and pid; their scalars are metrics.jsonl's
        other = faulty[name]
        if name.endswith(".npz"):
            mine, theirs = _npz(data), _npz(other)
            assert mine.keys() == theirs.keys(), name
            for key in mine:
                np.testing.assert_allclose(theirs[key], mine[key], atol=1e-5, err_msg=f"{name}:{key}")
        elif name.endswith(".png"):
            assert np.abs(_png(data) - _png(other)).max() <= 1, name
        elif name.endswith("metrics.jsonl"):
            lines = [json.loads(line) for line in data.decode().splitlines()]
            again = [json.loads(line) for line in other.decode().splitlines()]
            assert [line["epoch"] for line in again] == [line["epoch"] for line in lines], name
            for a, b in zip(lines, again, strict=True):
                for key in set(a) - TIMING:
                    assert b[key] == pytest.approx(a[key], abs=1e-5), (name, key)
        elif name.endswith(("latest.json", "state.json")):
            a, b = json.loads(data), json.loads(other)
            assert a.get("stages", a.get("step")) == b.get("stages", b.get("step")), name
        elif name in ("run.yaml", "pixelcnn/codes/codes.json") or name.startswith("code/"):
            assert other.decode().replace(faulty_bucket, clean_bucket) == data.decode(), name


def _faulted(records: list[ProxiedRequest]) -> dict[str, set[str]]:
    """The faults each action (upload, compose, list, read, metadata, delete) met."""
    met: dict[str, set[str]] = {}
    for record in records:
        if record.fault is not None:
            met.setdefault(record.action, set()).add(record.fault)
    return met


@pytest.mark.slow
def test_a_run_through_a_flaky_bucket_writes_what_a_clean_run_writes(
    tmp_path: Path, gcs_bucket: str, proxy_for: Any, argomlops_cache: Path
) -> None:
    training = {
        "vqvae": {"epochs": 4, "batchSize": 8, "stepsPerEpoch": 3, "checkpointEvery": 1, "imagesEvery": 2},
        "pixelcnn": {"epochs": 3, "batchSize": 8, "stepsPerEpoch": 3, "checkpointEvery": 1, "sampleCount": 4},
    }
    extra = {"stages": ["vqvae", "pixelcnn"], "models": {"vqvae": TINY_VQVAE, "pixelcnn": {"filters": 8, "layers": 2}}}
    faulty_bucket = _new_bucket()
    clean_proxy = proxy_for()
    # Four requests of every kind fail, each in another way (an answer lost after the bucket
    # acted on it, a dropped connection, 503, 429); then 5 % of requests at random, and two bursts of 1.5 s
    # in which nothing but 503 comes back.
    kinds = ("lost", "drop", "503", "429")
    faults = Faults(rate=0.05, seed=5, burst_every=90, burst_seconds=1.5, first_of_each_action=kinds)
    faulty_proxy = proxy_for(faults)
    clean = _train(_config(tmp_path, gcs_bucket, training, **extra), _env(clean_proxy.endpoint))
    faulty = _train(
        _config(tmp_path, faulty_bucket, training, **extra),
        _env(faulty_proxy.endpoint, ARGOMLOPS_GCS_RETRY_SECONDS="60"),
    )
    (clean_code, clean_log), (faulty_code, faulty_log) = _finish(clean), _finish(faulty)
    assert clean_code == 0, clean_log[-3000:]
    assert faulty_code == 0, faulty_log[-3000:]

    # Every kind of request met the worst fault (done, but its answer lost) at least once; the frequent
    # ones met every fault; and every fault was met by some kind of request.
    met = _faulted(faulty_proxy.records())
    for action in ("upload", "compose", "list", "read", "metadata", "delete"):
        assert "lost" in met.get(action, set()), (action, met)
    for action in ("upload", "compose", "list"):
        assert set(kinds) <= met[action], (action, met)
    assert set().union(*met.values()) >= {*kinds, "burst"}, met
    prefix = f"runs/{RUN_ID}/"
    _same_artifacts(_objects(gcs_bucket, prefix), _objects(faulty_bucket, prefix), gcs_bucket, faulty_bucket)


@pytest.mark.slow
def test_a_bucket_down_for_good_ends_with_143_and_a_complete_checkpoint_then_resumes(
    tmp_path: Path, gcs_bucket: str, proxy_for: Any, argomlops_cache: Path
) -> None:
    training = {"vqvae": {"epochs": 4, "batchSize": 4, "stepsPerEpoch": 2, "checkpointEvery": 1, "imagesEvery": 0}}
    config = _config(tmp_path, gcs_bucket, training)
    second = f"runs/{RUN_ID}/vqvae/checkpoints/step-00000004/optimizer.npz"

    def outage(record: ProxiedRequest) -> bool:
        # The bucket goes away for good while the second checkpoint is half uploaded.
        return record.is_upload and record.object == second

    proxy = proxy_for(Faults(down_when=outage))
    code, log = _finish(_train(config, _env(proxy.endpoint, ARGOMLOPS_GCS_RETRY_SECONDS="3")))
    assert code == 143, log[-3000:]
    assert re.search(r"error: storage unavailable: writing gs://\S+/step-00000004/optimizer\.npz", log), log[-2000:]
    assert should_retry(PREEMPTION_EXPRESSION, code, "Failed", log.splitlines()[-1]) is True

    stored = _objects(gcs_bucket, f"runs/{RUN_ID}/")
    latest = json.loads(stored["latest.json"])["stages"]["vqvae"]
    assert latest == {"checkpoint": "vqvae/checkpoints/step-00000002", "done": False}
    for part in ("weights.npz", "optimizer.npz", "state.json"):
        assert f"{latest['checkpoint']}/{part}" in stored  # what latest.json names is complete
    assert "vqvae/checkpoints/step-00000004/weights.npz" in stored  # the cut-short save...
    assert "vqvae/checkpoints/step-00000004/state.json" not in stored  # ...never became a checkpoint

    # The bucket is back: the same command resumes from the complete checkpoint and finishes.
    code, log = _finish(_train(config, _env(proxy_for().endpoint)))
    assert code == 0, log[-3000:]
    assert "resumed from vqvae/checkpoints/step-00000002" in log
    stored = _objects(gcs_bucket, f"runs/{RUN_ID}/")
    lines = [json.loads(line) for line in stored["vqvae/metrics.jsonl"].decode().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4] and lines[-1]["step"] == 8
    assert sorted({n.split("/")[2] for n in stored if n.startswith("vqvae/checkpoints/")}) == [
        "step-00000006",
        "step-00000008",
    ]
