"""`GCSStore`: a run's artifacts (or a data set) under a prefix of a Google Cloud Storage bucket.

Every write is atomic: an object upload only becomes visible once complete, and `append_bytes` composes
the old object with the new bytes into the same name in one request, so a reader sees the old content
or the new. Appending is what keeps growing files (metrics.jsonl, TensorBoard events) from being
uploaded whole again each epoch: the bytes a run uploads stay proportional to what it keeps
(tests/test_gcs_usage.py holds it to that).

Every call passes the bounded retry of `gcs_client.gcs_retry()` and turns an outage that outlasts it
into `StorageUnavailable` (exit 143). Sizes of what the store writes, lists and deletes go to
`gcs_usage.STORED`, so the size of a run folder is known without listing it again.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from argomlops.trainer.gcs_client import gcs_client, gcs_retry, is_transient, retry_seconds, unavailable_as_exit
from argomlops.trainer.gcs_usage import REQUESTS, STORED
from argomlops.trainer.storage import (
    _TMP_MARK,
    GS_SCHEME,
    ArtifactStore,
    _atomic_local_write,
    _clean_rel,
    _join,
    _parallel,
    split_gs_uri,
)

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Bucket

_MD5_CHUNK = 1 << 20

# (bucket, object) -> (generation, size) as this process last wrote it: the precondition of the next append.
_appended: dict[tuple[str, str], tuple[int | None, int]] = {}
_appended_lock = threading.Lock()


def _content_type(key: str) -> str:
    guessed, _ = mimetypes.guess_type(key)
    return guessed or "application/octet-stream"


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

    def _where(self, rel: str) -> str:
        return f"{self.uri}/{_clean_rel(rel)}" if _clean_rel(rel) else self.uri

    def child(self, rel: str) -> GCSStore:
        return GCSStore(self.bucket_name, self._key(rel))

    def _wrote(self, blob: Blob, size: int) -> None:
        STORED.record(self.bucket_name, blob.name, size)
        with _appended_lock:
            _appended[(self.bucket_name, blob.name)] = (blob.generation, size)

    def write_bytes(self, rel: str, data: bytes) -> None:
        key = self._key(rel)
        blob = self._bucket.blob(key)
        with unavailable_as_exit(self._where(rel), "writing"):
            # Rewriting the same object is idempotent for us, so unconditional uploads may be retried too.
            blob.upload_from_string(data, content_type=_content_type(key), retry=gcs_retry())
        self._wrote(blob, len(data))

    def read_bytes(self, rel: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            with unavailable_as_exit(self._where(rel), "reading"):
                data: bytes = self._bucket.blob(self._key(rel)).download_as_bytes(retry=gcs_retry())
        except NotFound as exc:
            raise FileNotFoundError(f"{self._where(rel)}: no such object") from exc
        return data

    def exists(self, rel: str) -> bool:
        with unavailable_as_exit(self._where(rel), "looking up"):
            return bool(self._bucket.blob(self._key(rel)).exists(retry=gcs_retry()))

    def blobs(self, prefix: str = "", temporary: bool = False) -> list[Any]:
        """The objects under the folder `prefix` (their sizes recorded); temporary ones only when asked."""
        folder = self._key(prefix)
        with unavailable_as_exit(self._where(prefix), "listing"):
            found = list(
                gcs_client().list_blobs(self.bucket_name, prefix=f"{folder}/" if folder else None, retry=gcs_retry())
            )
        for blob in found:
            STORED.record(self.bucket_name, blob.name, int(blob.size or 0))
        return [
            b for b in found if not b.name.endswith("/") and (temporary or _TMP_MARK not in PurePosixPath(b.name).name)
        ]

    def folders(self, prefix: str = "") -> list[str]:
        folder = self._key(prefix)
        start = f"{folder}/" if folder else ""
        with unavailable_as_exit(self._where(prefix), "listing"):
            # With a delimiter GCS answers the next level's prefixes only, however much lies below them.
            pages = gcs_client().list_blobs(self.bucket_name, prefix=start or None, delimiter="/", retry=gcs_retry())
            for _page in pages.pages:
                pass
        return sorted(p[len(start) :].rstrip("/") for p in pages.prefixes)

    def list(self, prefix: str = "") -> list[str]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(blob.name[cut:] for blob in self.blobs(prefix))

    def upload_file(self, local: Path, rel: str) -> None:
        key = self._key(rel)
        blob = self._bucket.blob(key)
        with unavailable_as_exit(self._where(rel), "writing"):
            blob.upload_from_filename(str(local), content_type=_content_type(key), retry=gcs_retry())
        self._wrote(blob, Path(local).stat().st_size)

    def download_file(self, rel: str, local: Path) -> None:
        from google.api_core.exceptions import NotFound

        blob = self._bucket.blob(self._key(rel))
        try:
            with unavailable_as_exit(self._where(rel), "reading"):
                _atomic_local_write(Path(local), lambda handle: blob.download_to_file(handle, retry=gcs_retry()))
        except NotFound as exc:
            raise FileNotFoundError(f"{self._where(rel)}: no such object") from exc

    def delete_tree(self, rel: str) -> None:
        key = self._key(rel)
        blobs = self.blobs(rel, temporary=True)
        single = self._bucket.blob(key)
        with unavailable_as_exit(self._where(rel), "deleting"):
            if key and single.exists(retry=gcs_retry()):
                blobs.append(single)
            if blobs:
                # A retried delete that had already happened answers 404: nothing is left to delete.
                self._bucket.delete_blobs(blobs, on_error=lambda _blob: None, retry=gcs_retry())
        STORED.forget(self.bucket_name, [b.name for b in blobs])
        with _appended_lock:
            for blob in blobs:
                _appended.pop((self.bucket_name, blob.name), None)

    def sent_bytes(self) -> int | None:
        return REQUESTS.figures()["sentBytes"]

    def stored_bytes(self, refresh: bool = False) -> int | None:
        if refresh:
            self.blobs()
        return STORED.total(self.bucket_name, self.prefix)

    def append_bytes(self, rel: str, data: bytes) -> None:
        """Add `data` to the end of `rel` in one compose request; the whole object is never uploaded again.

        The new bytes go to a temporary object beside it, which is composed after the current object into
        the same name and then deleted. Compose is not idempotent (a retry after a lost answer would
        append twice), so it is retried here rather than by the client: after a failure the object's
        size tells whether the append already happened.
        """
        key = self._key(rel)
        known = self._append_base(key)
        if known is None:
            self.write_bytes(rel, data)
            return
        generation, size = known
        folder, _, name = key.rpartition("/")
        part = self._bucket.blob(_join(folder, f".{name}{_TMP_MARK}{uuid.uuid4().hex}"))
        with unavailable_as_exit(self._where(rel), "appending to"):
            part.upload_from_string(data, content_type=_content_type(key), retry=gcs_retry())
        target = self._bucket.blob(key)
        target.content_type = _content_type(key)
        self._compose(rel, target, part, generation, size + len(data))
        self._wrote(target, size + len(data))
        with unavailable_as_exit(self._where(rel), "appending to"):
            self._bucket.delete_blobs([part], on_error=lambda _blob: None, retry=gcs_retry())

    def _append_base(self, key: str) -> tuple[int | None, int] | None:
        """(generation, size) of the object to append to, from this process's last write or a lookup."""
        with _appended_lock:
            known = _appended.get((self.bucket_name, key))
        if known is not None:
            return known
        with unavailable_as_exit(self._where(key), "looking up"):
            blob = self._bucket.get_blob(key, retry=gcs_retry())
        return None if blob is None else (blob.generation, int(blob.size or 0))

    def _compose(self, rel: str, target: Blob, part: Blob, generation: int | None, expected: int) -> None:
        """Compose `target` + `part` into `target` until its size is `expected`, retrying transient errors."""
        from google.api_core.exceptions import PreconditionFailed

        deadline = time.monotonic() + retry_seconds()
        delay = 0.5
        while True:
            try:
                target.compose([target, part], if_generation_match=generation, retry=None)
                return
            except Exception as exc:
                if not (is_transient(exc) or isinstance(exc, PreconditionFailed)):
                    raise
                with unavailable_as_exit(self._where(rel), "appending to"):
                    current = self._bucket.get_blob(target.name, retry=gcs_retry())
                if current is not None and int(current.size or 0) == expected:
                    target.reload(retry=gcs_retry())  # the compose landed; its answer was lost
                    return
                if isinstance(exc, PreconditionFailed) or time.monotonic() + delay > deadline:
                    with unavailable_as_exit(self._where(rel), "appending to"):
                        raise
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _local_md5(path: Path) -> str:
    """Base64 MD5 of a file, as GCS reports `md5Hash`."""
    digest = hashlib.md5(usedforsecurity=False)  # an integrity check against GCS, not a secret
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
    blobs = store.blobs("")
    wanted = {b.name[cut:] for b in blobs}
    stale = [p for p in cache_dir.rglob("*") if p.is_file() and p.relative_to(cache_dir).as_posix() not in wanted]
    for path in stale:
        path.unlink()
    missing = [b for b in blobs if not _is_current(b, cache_dir / b.name[cut:])]

    def fetch(blob: Any) -> None:
        with unavailable_as_exit(f"{GS_SCHEME}{store.bucket_name}/{blob.name}", "reading"):
            _atomic_local_write(cache_dir / blob.name[cut:], lambda h: blob.download_to_file(h, retry=gcs_retry()))

    _parallel(fetch, missing)
    if log is not None:
        log(
            f"synced {uri} to {cache_dir}: {len(missing)} downloaded, {len(blobs) - len(missing)} already cached, "
            f"{len(stale)} removed"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir
