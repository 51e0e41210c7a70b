"""One storage interface for a run's artifacts and a data set: a local folder or a gs://bucket/prefix.

Every write is atomic: a reader sees the old content or the new, never a half-written file. Locally a
temporary file in the same folder is renamed over the target (`os.replace`); in GCS a single object
upload only becomes visible once complete. The GCS client is created on first use, so importing this
module needs neither network nor credentials. With `STORAGE_EMULATOR_HOST` set (tests, a local
emulator) the client talks to the emulator with anonymous credentials.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud.storage import Bucket, Client

GS_SCHEME = "gs://"
# Temporary files carry this marker so that `list` never reports a write in progress.
_TMP_MARK = ".tmp-"
# Parallel transfers: many small images are dominated by per-request latency, not bandwidth.
_TRANSFER_THREADS = 16
_MD5_CHUNK = 1 << 20


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
                shutil.copyfileobj(source, handle, _MD5_CHUNK)

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


_clients: dict[str | None, Client] = {}
_clients_lock = threading.Lock()


def gcs_client() -> Client:
    """The process's google-cloud-storage client (one per emulator setting), created on first use."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    with _clients_lock:
        if emulator not in _clients:
            from google.cloud import storage

            if emulator:
                # The emulator accepts anything; anonymous credentials avoid looking for real ones.
                from google.auth.credentials import AnonymousCredentials

                project = os.environ.get("GOOGLE_CLOUD_PROJECT", "argomlops-local")
                _clients[emulator] = storage.Client(project=project, credentials=AnonymousCredentials())
            else:
                _clients[emulator] = storage.Client()
        return _clients[emulator]


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


class GCSStore(ArtifactStore):
    """Objects under a prefix of a Google Cloud Storage bucket."""

    def __init__(self, bucket: str, prefix: str = "") -> None:
        self.bucket_name = bucket
        self.prefix = _clean_rel(prefix)
        self.uri = f"{GS_SCHEME}{bucket}/{self.prefix}" if self.prefix else f"{GS_SCHEME}{bucket}"

    @property
    def _bucket(self) -> Bucket:
        return gcs_client().bucket(self.bucket_name)

    def _key(self, rel: str) -> str:
        return _join(self.prefix, _clean_rel(rel))

    def child(self, rel: str) -> GCSStore:
        return GCSStore(self.bucket_name, self._key(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY

        key = self._key(rel)
        # Rewriting the same object is idempotent for us, so unconditional uploads may be retried too.
        self._bucket.blob(key).upload_from_string(data, content_type=_content_type(key), retry=DEFAULT_RETRY)

    def read_bytes(self, rel: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            data: bytes = self._bucket.blob(self._key(rel)).download_as_bytes()
        except NotFound as exc:
            raise FileNotFoundError(f"{self.uri}/{_clean_rel(rel)}: no such object") from exc
        return data

    def exists(self, rel: str) -> bool:
        return bool(self._bucket.blob(self._key(rel)).exists())

    def _blobs(self, prefix: str) -> Iterator[Any]:
        folder = self._key(prefix)
        return gcs_client().list_blobs(self.bucket_name, prefix=f"{folder}/" if folder else None)

    def folders(self, prefix: str = "") -> list[str]:
        folder = self._key(prefix)
        start = f"{folder}/" if folder else ""
        # With a delimiter GCS answers the next level's prefixes only, however much lies below them.
        pages = gcs_client().list_blobs(self.bucket_name, prefix=start or None, delimiter="/")
        for _page in pages.pages:
            pass
        return sorted(p[len(start) :].rstrip("/") for p in pages.prefixes)

    def list(self, prefix: str = "") -> list[str]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(blob.name[cut:] for blob in self._blobs(prefix) if not blob.name.endswith("/"))

    def upload_file(self, local: Path, rel: str) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY

        key = self._key(rel)
        self._bucket.blob(key).upload_from_filename(str(local), content_type=_content_type(key), retry=DEFAULT_RETRY)

    def download_file(self, rel: str, local: Path) -> None:
        from google.api_core.exceptions import NotFound

        blob = self._bucket.blob(self._key(rel))
        try:
            _atomic_local_write(Path(local), blob.download_to_file)
        except NotFound as exc:
            raise FileNotFoundError(f"{self.uri}/{_clean_rel(rel)}: no such object") from exc

    def delete_tree(self, rel: str) -> None:
        key = self._key(rel)
        blobs = list(self._blobs(rel))
        single = self._bucket.blob(key)
        if key and single.exists():
            blobs.append(single)
        if blobs:
            self._bucket.delete_blobs(blobs, on_error=lambda _blob: None)


def _content_type(key: str) -> str:
    guessed, _ = mimetypes.guess_type(key)
    return guessed or "application/octet-stream"


def open_store(uri: str) -> ArtifactStore:
    """A store for `uri`: gs://bucket/prefix -> GCSStore, anything else -> LocalStore."""
    if uri.startswith(GS_SCHEME):
        return GCSStore(*split_gs_uri(uri))
    return LocalStore(uri)


def _local_md5(path: Path) -> str:
    """Base64 MD5 of a file, as GCS reports `md5Hash`."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_MD5_CHUNK), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


def _is_current(blob: Any, local: Path) -> bool:
    """Whether `local` already holds the object's content (same size, and same MD5 when GCS has one)."""
    if not local.is_file() or local.stat().st_size != blob.size:
        return False
    # Composite objects carry no MD5: the size must then do.
    return blob.md5_hash is None or _local_md5(local) == blob.md5_hash


def sync_to_cache(uri: str, cache_dir: Path, log: Callable[[str], None] | None = None) -> Path:
    """Mirror a gs:// prefix into `cache_dir` and return it.

    Files already in the cache with the same size and MD5 are not downloaded again; files in the cache
    that are no longer in the bucket are removed, so the cache is an exact copy of the prefix.
    """
    cache_dir = Path(cache_dir)
    store = GCSStore(*split_gs_uri(uri))
    cut = len(store.prefix) + 1 if store.prefix else 0
    blobs = [b for b in store._blobs("") if not b.name.endswith("/")]
    wanted = {b.name[cut:] for b in blobs}
    stale = [p for p in cache_dir.rglob("*") if p.is_file() and p.relative_to(cache_dir).as_posix() not in wanted]
    for path in stale:
        path.unlink()
    missing = [b for b in blobs if not _is_current(b, cache_dir / b.name[cut:])]

    def fetch(blob: Any) -> None:
        _atomic_local_write(cache_dir / blob.name[cut:], blob.download_to_file)

    _parallel(fetch, missing)
    if log is not None:
        log(
            f"synced {uri} to {cache_dir}: {len(missing)} downloaded, {len(blobs) - len(missing)} already cached, "
            f"{len(stale)} removed"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir
