"""The operator reads two small result files of a sweep's trial runs: `<run>/<stage>/metrics.jsonl` and evaluation.json.

Why the operator reads them, and what it may read. The pruner needs a trial's objective after every
epoch while the trial runs. The pod's report (Argo's output parameter) reaches the Workflow only when
the pod ends, and the node's progress is "N/M" steps: neither carries the numbers. The trainer could
push them into something the operator watches (its Pod, a ConfigMap, the Workflow), but that would give
the trainer's identity a write permission in the Kubernetes API, and the trainer pod also runs user code
(`spec.git`); a run could then rewrite another run's numbers, or its own cost. The other way grants less:
the operator's Google identity may read objects of the bucket whose names end in `/metrics.jsonl` or
`/evaluation.json` (an IAM condition, docs/gke.md): numbers only, never an image, model or checkpoint,
and no write. It is also the way `argomlops sweep` prunes on a laptop, reading the same file.

A read is one Class B request. The operator reads a running trial's metrics.jsonl only when the trial's
progress moved since the last read (Argo updates it about once a minute), and once more when it ends.

Artifacts on a local path (a single-node test cluster) are read from the operator's file system.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

READ_RETRY_SECONDS = 10.0
"""How long one read retries a bucket that fails (429, 5xx, no answer): the next pass of the sweep tries again."""
_client: Any = None
_client_lock = threading.Lock()


class UnreadableRunFile(Exception):
    """A run file exists (or may) but cannot be read now: no permission, the bucket unreachable."""


def _storage_client() -> Any:
    """The storage client: anonymous against STORAGE_EMULATOR_HOST when set, else with default credentials."""
    global _client
    with _client_lock:
        if _client is None:
            from google.cloud import storage

            if os.environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                project = os.environ.get("GOOGLE_CLOUD_PROJECT", "argomlops-local")
                _client = storage.Client(project=project, credentials=AnonymousCredentials())
            else:
                _client = storage.Client()
        return _client


def read_run_file(run_uri: str, rel: str) -> str | None:
    """The text of `<run_uri>/<rel>`, or None when there is no such file (yet).

    Raises:
        UnreadableRunFile: any other failure, with one line saying what and why.
    """
    if not run_uri.startswith("gs://"):
        path = Path(run_uri) / rel
        try:
            return path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UnreadableRunFile(f"cannot read {path}: {exc.strerror}") from exc
    from google.api_core import exceptions
    from google.auth.exceptions import GoogleAuthError
    from google.cloud.storage.retry import DEFAULT_RETRY

    bucket, _, prefix = run_uri[len("gs://") :].partition("/")
    name = f"{prefix.rstrip('/')}/{rel}" if prefix else rel
    try:
        blob = _storage_client().bucket(bucket).blob(name)
        text: str = blob.download_as_text(timeout=10, retry=DEFAULT_RETRY.with_timeout(READ_RETRY_SECONDS))
    except exceptions.NotFound:
        return None
    except (exceptions.GoogleAPIError, GoogleAuthError) as exc:
        raise UnreadableRunFile(
            f"cannot read gs://{bucket}/{name}: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
    except OSError as exc:  # a connection that failed before any answer (requests' errors are OSErrors)
        raise UnreadableRunFile(f"cannot read gs://{bucket}/{name}: {exc}".splitlines()[0]) from exc
    return text
