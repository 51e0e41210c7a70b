"""The process's Google Cloud Storage client: every request counted by billing class, retries bounded in time.

Over a run of days some requests fail (503, 429, a reset connection). Every call the stores make passes
`gcs_retry()`: google-cloud-storage's own retry predicate (429, 408, 5xx, connection errors, timeouts),
with exponential backoff and full jitter, for at most `$ARGOMLOPS_GCS_RETRY_SECONDS` (default 120, the
library's own deadline) per call. Every retried call is safe to repeat: uploads rewrite the same bytes,
reads and lists have no effect, a delete that already happened answers 404 (ignored), and appends
(`GCSStore.append_bytes`) check the object's size before composing again.

A bucket still failing after that deadline is an outage, not a blip: `unavailable_as_exit` turns the
error into `StorageUnavailable` (exit 143), so the pod ends the way a preemption does and the template
retries it, and the rerun resumes from the newest complete checkpoint (argomlops/errors.py).

The client is created on first use (importing this module needs neither network nor credentials); with
`STORAGE_EMULATOR_HOST` set (tests, a local emulator) it talks to the emulator with anonymous credentials.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from argomlops.errors import StorageUnavailable
from argomlops.trainer.gcs_usage import REQUESTS

if TYPE_CHECKING:
    from google.cloud.storage import Client

RETRY_ENV = "ARGOMLOPS_GCS_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 120.0

_clients: dict[str | None, Client] = {}
_clients_lock = threading.Lock()


def retry_seconds() -> float:
    """How long one storage call is retried: `$ARGOMLOPS_GCS_RETRY_SECONDS`, else 120 s."""
    raw = os.environ.get(RETRY_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_RETRY_SECONDS
    except ValueError:
        seconds = DEFAULT_RETRY_SECONDS
    return seconds if seconds > 0 else DEFAULT_RETRY_SECONDS


def gcs_retry() -> Any:
    """google-cloud-storage's retry of transient errors, for at most `retry_seconds()` per call."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(retry_seconds())


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is an error a retry may heal (the library's own predicate)."""
    from google.cloud.storage.retry import _should_retry

    return bool(_should_retry(exc))


def _counted_session(credentials: Any) -> Any:
    """An authorized `requests` session whose every response is counted in `REQUESTS`."""
    from google.auth.transport.requests import AuthorizedSession

    session = AuthorizedSession(credentials)
    session.hooks["response"].append(REQUESTS.response_hook)
    return session


def gcs_client() -> Client:
    """The process's google-cloud-storage client (one per emulator setting), created on first use."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    with _clients_lock:
        if emulator not in _clients:
            import google.auth
            from google.cloud import storage

            if emulator:
                # The emulator accepts anything; anonymous credentials avoid looking for real ones.
                from google.auth.credentials import AnonymousCredentials

                credentials: Any = AnonymousCredentials()
                project: str | None = os.environ.get("GOOGLE_CLOUD_PROJECT", "argomlops-local")
            else:
                credentials, project = google.auth.default(scopes=storage.Client.SCOPE)
            kwargs: dict[str, Any] = {"project": project} if project else {}
            # `_http` is the client's documented way to pass its session: ours counts every request.
            _clients[emulator] = storage.Client(credentials=credentials, _http=_counted_session(credentials), **kwargs)
        return _clients[emulator]


@contextmanager
def unavailable_as_exit(uri: str, what: str) -> Iterator[None]:
    """Raise `StorageUnavailable` (exit 143) for a transient storage error the retries gave up on."""
    from google.api_core.exceptions import RetryError

    try:
        yield
    except RetryError as exc:
        cause = exc.cause or exc
        raise StorageUnavailable(
            f"storage unavailable: {what} {uri} still failing after {retry_seconds():.0f} s of retries "
            f"({type(cause).__name__}: {cause}); stopping so the run is retried from its last checkpoint"
        ) from exc
    except Exception as exc:
        if not is_transient(exc):
            raise
        raise StorageUnavailable(
            f"storage unavailable: {what} {uri} failed ({type(exc).__name__}: {exc}); "
            "stopping so the run is retried from its last checkpoint"
        ) from exc
