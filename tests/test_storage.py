"""The storage interface: one behaviour suite run on a local folder and on gs:// (a real GCS emulator).

The gs:// cases talk to gcp-storage-emulator on 127.0.0.1 through the real google-cloud-storage client;
only the server is not Google's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from argomlops.trainer import storage
from argomlops.trainer.gcs_store import GCSStore
from argomlops.trainer.storage import ArtifactStore, LocalStore, open_store, sync_to_cache


@pytest.fixture(params=["local", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """An empty store rooted at a run-like prefix, local or in a fresh emulator bucket."""
    if request.param == "local":
        return open_store(str(tmp_path / "runs" / "x"))
    bucket = request.getfixturevalue("gcs_bucket")
    return open_store(f"gs://{bucket}/prefix/runs/x")


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    gcs = open_store("gs://bucket/a/b/")
    assert isinstance(gcs, GCSStore)
    assert (gcs.bucket_name, gcs.prefix, gcs.uri) == ("bucket", "a/b", "gs://bucket/a/b")
    assert open_store("gs://bucket").uri == "gs://bucket"
    local = open_store("runs/x")
    assert isinstance(local, LocalStore)
    assert local.uri == "runs/x"
    assert open_store("runs").child("2026-11-27_09h01m09s").uri == os.path.join("runs", "2026-11-27_09h01m09s")
    assert open_store("gs://b/p").child("r/").uri == "gs://b/p/r"


def test_importing_storage_needs_no_google_client() -> None:
    code = "import sys, argomlops.trainer.storage; print('google.cloud.storage' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_round_trip_of_binary_text_and_json(store: ArtifactStore) -> None:
    data = os.urandom(3 << 20)
    store.write_bytes("vqvae/checkpoints/ckpt.bin", data)
    store.write_text("notes/ü.txt", "grüße\n")
    store.write_json("latest.json", {"epoch": 3, "files": ["a", "b"]})
    assert store.read_bytes("vqvae/checkpoints/ckpt.bin") == data
    assert store.read_text("notes/ü.txt") == "grüße\n"
    assert store.read_json("latest.json") == {"epoch": 3, "files": ["a", "b"]}
    store.write_json("latest.json", {"epoch": 4})
    assert store.read_json("latest.json") == {"epoch": 4}


def test_missing_files(store: ArtifactStore, tmp_path: Path) -> None:
    store.write_text("a/b.txt", "x")
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        store.read_bytes("nope.txt")
    with pytest.raises(FileNotFoundError):
        store.download_file("a/nope.txt", tmp_path / "out" / "nope.txt")
    assert not (tmp_path / "out" / "nope.txt").exists()
    assert store.exists("a/b.txt")
    assert not store.exists("a")  # a folder is not a file
    assert not store.exists("a/c.txt")


def test_list_is_recursive_sorted_and_folder_scoped(store: ArtifactStore) -> None:
    for name in ["b.txt", "a/2.txt", "a/1.txt", "a/deep/3.txt", "ab/4.txt"]:
        store.write_text(name, name)
    assert store.list() == ["a/1.txt", "a/2.txt", "a/deep/3.txt", "ab/4.txt", "b.txt"]
    assert store.list("a") == ["a/1.txt", "a/2.txt", "a/deep/3.txt"]
    assert store.list("a/") == store.list("a")
    assert store.list("missing") == []
    assert [store.read_text(p) for p in store.list("a/deep")] == ["a/deep/3.txt"]


def test_child_is_rooted_below(store: ArtifactStore) -> None:
    child = store.child("vqvae")
    child.write_text("metrics.jsonl", "{}\n")
    assert child.uri == f"{store.uri}/vqvae"
    assert store.read_text("vqvae/metrics.jsonl") == "{}\n"
    assert child.list() == ["metrics.jsonl"]


def test_paths_cannot_escape_the_root(store: ArtifactStore) -> None:
    with pytest.raises(ValueError, match=r"\.\."):
        store.write_text("../outside.txt", "x")
    with pytest.raises(ValueError, match="relative"):
        store.read_text("/etc/passwd")


def test_files_and_trees(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name, text in {"model.keras": "m", "checkpoints/ckpt-1.h5": "c1", "checkpoints/deep/x": "d"}.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    store.upload_file(src / "model.keras", "single/model.keras")
    store.download_file("single/model.keras", tmp_path / "dl" / "m.keras")
    assert (tmp_path / "dl" / "m.keras").read_text() == "m"

    store.upload_tree(src, "vqvae")
    assert store.list("vqvae") == ["vqvae/checkpoints/ckpt-1.h5", "vqvae/checkpoints/deep/x", "vqvae/model.keras"]
    store.download_tree("vqvae/checkpoints", tmp_path / "back")
    got = sorted(p.relative_to(tmp_path / "back").as_posix() for p in (tmp_path / "back").rglob("*") if p.is_file())
    assert got == ["ckpt-1.h5", "deep/x"]
    assert (tmp_path / "back" / "deep" / "x").read_text() == "d"

    store.delete_tree("vqvae/checkpoints")
    assert store.list("vqvae") == ["vqvae/model.keras"]
    store.delete_tree("single/model.keras")
    assert not store.exists("single/model.keras")
    store.delete_tree("never/was")  # nothing to delete is fine


def test_local_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the moment of the rename the full content sits in a temp file that `list` hides; the target is absent."""
    store = LocalStore(tmp_path / "run")
    data = os.urandom(1 << 20)
    seen: dict[str, object] = {}
    real_replace = os.replace

    def spy(src: str, dst: str | Path) -> None:
        seen["target_exists"] = store.exists("vqvae/ckpt.bin")
        seen["listed"] = store.list()
        seen["temp_complete"] = Path(src).read_bytes() == data
        seen["same_folder"] = Path(src).parent == Path(dst).parent
        real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", spy)
    store.write_bytes("vqvae/ckpt.bin", data)
    assert seen == {"target_exists": False, "listed": [], "temp_complete": True, "same_folder": True}
    assert store.read_bytes("vqvae/ckpt.bin") == data


def test_failed_local_write_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    store.write_text("latest.json", "old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        store.write_text("latest.json", "new content that never lands")
    assert store.read_text("latest.json") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json"]  # no temp file left behind


def test_sync_to_cache_skips_unchanged_files(gcs_bucket: str, tmp_path: Path) -> None:
    remote = open_store(f"gs://{gcs_bucket}/images")
    for i in range(5):
        remote.write_bytes(f"set/{i}.png", bytes([i]) * (1000 + i))
    cache = tmp_path / "cache"
    lines: list[str] = []
    assert sync_to_cache(remote.uri, cache, lines.append) == cache
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*")) == [
        "set",
        *[f"set/{i}.png" for i in range(5)],
    ]
    assert (cache / "set" / "3.png").read_bytes() == bytes([3]) * 1003
    assert "5 downloaded, 0 already cached" in lines[-1]

    before = (cache / "set" / "0.png").stat().st_mtime_ns
    (cache / "set" / "1.png").write_bytes(b"\xff" * 1001)  # same size, other content: MD5 must catch it
    remote.write_bytes("set/5.png", b"new")
    remote.delete_tree("set/4.png")
    sync_to_cache(remote.uri, cache, lines.append)
    assert "2 downloaded, 3 already cached, 1 removed" in lines[-1]
    assert (cache / "set" / "0.png").stat().st_mtime_ns == before
    assert (cache / "set" / "1.png").read_bytes() == bytes([1]) * 1001
    assert not (cache / "set" / "4.png").exists()
    assert (cache / "set" / "5.png").read_bytes() == b"new"


def test_sync_to_cache_is_for_gs_uris_only(tmp_path: Path) -> None:
    # The data pipeline reads a local source in place; only gs:// sources are mirrored.
    with pytest.raises(ValueError, match="not a gs:// URI"):
        sync_to_cache(str(tmp_path), tmp_path / "unused")
    assert not (tmp_path / "unused").exists()


def test_append_adds_to_the_end_and_never_resends_the_whole(store: ArtifactStore) -> None:
    store.append_text("vqvae/metrics.jsonl", '{"epoch": 1}\n')
    store.append_text("vqvae/metrics.jsonl", '{"epoch": 2}\n')
    store.append_bytes("vqvae/metrics.jsonl", b'{"epoch": 3}\n')
    assert store.read_text("vqvae/metrics.jsonl").splitlines() == ['{"epoch": 1}', '{"epoch": 2}', '{"epoch": 3}']
    assert store.list() == ["vqvae/metrics.jsonl"]  # no temporary part is left, or listed
    store.write_text("vqvae/metrics.jsonl", "rewritten\n")
    store.append_text("vqvae/metrics.jsonl", "and one more\n")
    assert store.read_text("vqvae/metrics.jsonl") == "rewritten\nand one more\n"


def test_an_append_whose_answer_was_lost_is_not_made_twice(gcs_bucket: str, gcs_emulator: str) -> None:
    """Compose is not idempotent: a retry after the bucket acted but its answer never came would append twice."""
    from gcs_proxy import Faults, GCSProxy

    from argomlops.trainer import gcs_client

    proxy = GCSProxy(gcs_emulator, Faults(first_of_each_action=("lost", "503", "lost"))).start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
            patch.setattr(gcs_client, "_clients", {})
            store = open_store(f"gs://{gcs_bucket}/runs/x")
            for line in ("one\n", "two\n", "three\n", "four\n", "five\n"):
                store.append_text("log.txt", line)
            composes = [r for r in proxy.records() if r.action == "compose"]
        assert {r.fault for r in composes} >= {"lost", "503"}
    finally:
        proxy.stop()
    assert open_store(f"gs://{gcs_bucket}/runs/x").read_text("log.txt") == "one\ntwo\nthree\nfour\nfive\n"
