"""One storage interface for a run's artifacts and a data set: a local folder or a gs://bucket/prefix.

Every write is atomic: a reader sees the old content or the new, never a half-written file. Locally a
temporary file in the same folder is renamed over the target (`os.replace`); in GCS a single object
upload only becomes visible once complete. The GCS client is created on first use, so importing this
module needs neither network nor credentials. With `STORAGE_EMULATOR_HOST` set (tests, a local
emulator) the client talks to the emulator with anonymous credentials.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

GS_SCHEME = "gs://"
# Temporary files carry this marker so that `list` never reports a write in progress.
_TMP_MARK = ".tmp-"
# Parallel transfers: many small images are dominated by per-request latency, not bandwidth.
_TRANSFER_THREADS = 16
_COPY_CHUNK = 1 << 20


def _clean_rel(rel: str) -> str:
    """A normalised relative POSIX path; rejects absolute paths and `..` (a store never escapes its root)."""
    parts = [p for p in PurePosixPath(rel.replace("\\", "/")).parts if p not in ("", ".")]
    if parts and parts[0] == "/":
        raise ValueError(f"storage path must be relative, got {rel!r}")
    if ".." in parts:
        raise ValueError(f"storage path must not contain '..', got {rel!r}")
    return "/".join(parts)


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


class ArtifactStore(ABC):
    """Files under one root (`uri`), addressed by relative POSIX paths such as `vqvae/model.keras`."""

    uri: str

    @abstractmethod
    def child(self, rel: str) -> ArtifactStore:
        """A store rooted at `uri/rel`."""

    @abstractmethod
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a file atomically, creating parent folders; readers see the old or the new content."""

    @abstractmethod
    def read_bytes(self, rel: str) -> bytes:
        """The content of a file; raises FileNotFoundError when it is absent."""

    @abstractmethod
    def exists(self, rel: str) -> bool:
        """Whether a file (not a folder) exists at `rel`."""

    def folders(self, prefix: str = "") -> list[str]:
        """Sorted names of the folders directly under `prefix` (not recursive; files there are left out).

        The backends answer it without listing what lies deeper (`argomlops runs` lists a bucket of
        runs without listing their checkpoints); this fallback derives it from `list`.
        """
        base = _clean_rel(prefix)
        cut = len(base) + 1 if base else 0
        return sorted({path[cut:].split("/", 1)[0] for path in self.list(base) if "/" in path[cut:]})

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Sorted paths of the files under the folder `prefix`, recursive, relative to this store's root.

        `list("vqvae")` returns e.g. `["vqvae/metrics.jsonl", "vqvae/model.keras"]`, which `read_bytes`
        accepts as they are. Writes still in progress are never listed.
        """

    @abstractmethod
    def upload_file(self, local: Path, rel: str) -> None:
        """Copy a local file to `rel`, atomically as `write_bytes`."""

    @abstractmethod
    def download_file(self, rel: str, local: Path) -> None:
        """Copy `rel` to a local file (atomically, parents created); FileNotFoundError when absent."""

    @abstractmethod
    def delete_tree(self, rel: str) -> None:
        """Delete every file under the folder `rel` (or the file `rel`); nothing there is not an error."""

    @abstractmethod
    def append_bytes(self, rel: str, data: bytes) -> None:
        """Add `data` to the end of `rel` (created when absent), atomically as `write_bytes`."""

    def append_text(self, rel: str, text: str) -> None:
        """Add UTF-8 text to the end of `rel`."""
        self.append_bytes(rel, text.encode("utf-8"))

    def sent_bytes(self) -> int | None:
        """Bytes this process has uploaded to billed storage so far; None where nothing is billed (local)."""
        return None

    def stored_bytes(self, refresh: bool = False) -> int | None:
        """Bytes under this store's root as this process knows them (listed first with `refresh`).

        None where storage is not billed by size (a local folder).
        """
        return None

    def write_text(self, rel: str, text: str) -> None:
        """Write UTF-8 text atomically."""
        self.write_bytes(rel, text.encode("utf-8"))

    def read_text(self, rel: str) -> str:
        """Read a UTF-8 text file."""
        return self.read_bytes(rel).decode("utf-8")

    def write_json(self, rel: str, obj: Any) -> None:
        """Write `obj` as indented JSON atomically."""
        self.write_text(rel, json.dumps(obj, indent=2, sort_keys=False) + "\n")

    def read_json(self, rel: str) -> Any:
        """Read a JSON file."""
        return json.loads(self.read_text(rel))

    def upload_tree(self, local_dir: Path, rel: str) -> None:
        """Copy every file under `local_dir` to the folder `rel` (each file atomically)."""
        files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file())
        _parallel(lambda p: self.upload_file(p, _join(rel, p.relative_to(local_dir).as_posix())), files)

    def download_tree(self, rel: str, local_dir: Path) -> None:
        """Copy every file under the folder `rel` into `local_dir`, keeping the relative layout."""
        base = _clean_rel(rel)
        names = self.list(base)
        _parallel(lambda name: self.download_file(name, Path(local_dir) / name[len(base) :].lstrip("/")), names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def _parallel(fn: Callable[[Any], None], items: list[Any]) -> None:
    """Run `fn` on every item, a few at a time; the first exception is raised."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(_TRANSFER_THREADS, len(items))) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


def _atomic_local_write(target: Path, write: Callable[[Any], None]) -> None:
    """Create `target` through a temporary file in its folder, renamed over it once complete and flushed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{_TMP_MARK}")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class LocalStore(ArtifactStore):
    """A folder on the local file system."""

    def __init__(self, root: str | Path) -> None:
        self.uri = str(root)
        self.root = Path(root)

    def _path(self, rel: str) -> Path:
        clean = _clean_rel(rel)
        return self.root / clean if clean else self.root

    def child(self, rel: str) -> LocalStore:
        return LocalStore(self._path(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        _atomic_local_write(self._path(rel), lambda handle: handle.write(data))

    def read_bytes(self, rel: str) -> bytes:
        path = self._path(rel)
        if not path.is_file():
            raise FileNotFoundError(f"{self.uri}/{_clean_rel(rel)}: no such file")
        return path.read_bytes()

    def exists(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def folders(self, prefix: str = "") -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file() and _TMP_MARK not in p.name
        )

    def upload_file(self, local: Path, rel: str) -> None:
        def copy(handle: Any) -> None:
            with open(local, "rb") as source:
                shutil.copyfileobj(source, handle, _COPY_CHUNK)

        _atomic_local_write(self._path(rel), copy)

    def download_file(self, rel: str, local: Path) -> None:
        path = self._path(rel)
        if not path.is_file():
            raise FileNotFoundError(f"{self.uri}/{_clean_rel(rel)}: no such file")
        LocalStore(Path(local).parent).upload_file(path, Path(local).name)

    def delete_tree(self, rel: str) -> None:
        path = self._path(rel)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def append_bytes(self, rel: str, data: bytes) -> None:
        # A local rewrite costs nothing worth saving, and keeps the write atomic.
        old = self.read_bytes(rel) if self.exists(rel) else b""
        self.write_bytes(rel, old + data)


def cache_root() -> Path:
    """The local cache of argomlops: `$ARGOMLOPS_CACHE`, else `~/.cache/argomlops` (not created here)."""
    configured = os.environ.get("ARGOMLOPS_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "argomlops"


def split_gs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> (`bucket`, `a/b`); raises ValueError for anything else."""
    if not uri.startswith(GS_SCHEME):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, prefix = uri[len(GS_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"gs:// URI without a bucket: {uri!r}")
    return bucket, _clean_rel(prefix)


def open_store(uri: str) -> ArtifactStore:
    """A store for `uri`: gs://bucket/prefix -> GCSStore, anything else -> LocalStore."""
    if uri.startswith(GS_SCHEME):
        from argomlops.trainer.gcs_store import GCSStore

        return GCSStore(*split_gs_uri(uri))
    return LocalStore(uri)


def sync_to_cache(uri: str, cache_dir: Path, log: Callable[[str], None] | None = None) -> Path:
    """Mirror a gs:// prefix into `cache_dir` and return it (`gcs_store.sync_to_cache`)."""
    from argomlops.trainer.gcs_store import sync_to_cache as sync

    return sync(uri, cache_dir, log)
