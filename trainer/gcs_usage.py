"""What a trainer process asks of Google Cloud Storage, by billing class, and the report the operator reads.

GCS bills every request by its operation class (cloud.google.com/storage/pricing, "Operations by
class"), and storage by the GiB-month of what a bucket keeps. `operation_class` maps a JSON API request
to its class:

- Class A: `objects.insert` (every upload request, each request of a resumable upload included),
  `objects.list`, `objects.compose`, `copy`, `rewrite`, `patch`/`update`, `buckets.insert`/`list`;
- Class B: `objects.get` (metadata or media), `buckets.get`;
- free: deletes.

`REQUESTS` counts every HTTP response the process's storage client gets (a hook on its session, so
retries and the chunks of a resumable upload are counted as the bucket sees them). Requests the bucket
refused (429, 5xx) or that never got an answer are not billed and not counted. `STORED` keeps the size of
every object the process wrote, listed or deleted, so the size of a run folder is known without asking.

The report (`write_report`) is how the operator learns what a run costs in the bucket without any
access to it: the Workflow template names `$ARGOMLOPS_REPORT_FILE` as an output parameter of every
training pod, so Argo copies the file into the pod's node of the Workflow status when the pod ends, and
the operator reads it from there (operator/workflow_summary.py). The trainer writes it after every
checkpoint and when it exits. Its shape:

    {"stage": "vqvae", "checkpoint": "vqvae/checkpoints/step-00000120", "step": 120,
     "gcs": {"classA": 412, "classB": 35, "free": 96, "sentBytes": 9120334, "receivedBytes": 301225,
             "storedBytes": 2210876}}

The counts are of this process only (the operator adds up the pods of a run); `storedBytes` is the size
of the whole run folder as the process knows it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from argomlops.pod import REPORT_ENV

OperationClass = Literal["A", "B", "free"]

# An object's metadata or media (object names are URL-encoded: no "/" inside), and a bucket's metadata.
_OBJECT = re.compile(r"^(?:/download)?/storage/v1/b/[^/]+/o/[^/]+$")
_BUCKET = re.compile(r"^/storage/v1/b/[^/]+/?$")


def operation_class(method: str, url: str) -> OperationClass:
    """The billing class of one JSON API request (module docstring).

    Reads of one object or bucket are Class B, deletes free; everything else (uploads, lists, compose,
    copy, rewrite, patch, bucket create and list) is Class A, and so is anything unknown: an estimate
    charged at the dearer class never comes out too low.
    """
    method = method.upper()
    if method == "DELETE":
        return "free"
    path = urlsplit(url).path
    if method == "GET" and (_OBJECT.match(path) or _BUCKET.match(path)):
        return "B"
    return "A"


def _length(body: Any) -> int:
    return len(body) if isinstance(body, bytes | bytearray | str) else 0


class RequestCounts:
    """Counts of one process's storage requests by class, and the bytes on the wire each way (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.class_a = 0
        self.class_b = 0
        self.free = 0
        self.sent_bytes = 0
        self.received_bytes = 0

    def count(self, method: str, url: str, status: int, sent: int = 0, received: int = 0) -> None:
        """Count one answered request; refused ones (429, 5xx) are not billed and not counted."""
        if status == 429 or status >= 500:
            return
        kind = operation_class(method, url)
        with self._lock:
            if kind == "A":
                self.class_a += 1
            elif kind == "B":
                self.class_b += 1
            else:
                self.free += 1
            self.sent_bytes += sent
            self.received_bytes += received

    def response_hook(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        """A `requests` response hook: counts the request behind `response`, returns it unchanged."""
        request = response.request
        received = int(response.headers.get("Content-Length") or 0)
        self.count(request.method or "GET", request.url or "", response.status_code, _length(request.body), received)
        return response

    def figures(self) -> dict[str, int]:
        """The counts as the report writes them (camelCase keys)."""
        with self._lock:
            return {
                "classA": self.class_a,
                "classB": self.class_b,
                "free": self.free,
                "sentBytes": self.sent_bytes,
                "receivedBytes": self.received_bytes,
            }


class StoredObjects:
    """Sizes of the objects this process wrote, listed or deleted, by bucket and object name (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: dict[tuple[str, str], int] = {}

    def record(self, bucket: str, name: str, size: int) -> None:
        """An object now has `size` bytes."""
        with self._lock:
            self._sizes[(bucket, name)] = size

    def forget(self, bucket: str, names: Iterable[str]) -> None:
        """These objects are gone."""
        with self._lock:
            for name in names:
                self._sizes.pop((bucket, name), None)

    def total(self, bucket: str, prefix: str) -> int:
        """Bytes of the known objects under the folder `prefix` of `bucket`."""
        folder = prefix.rstrip("/") + "/" if prefix else ""
        with self._lock:
            return sum(size for (b, name), size in self._sizes.items() if b == bucket and name.startswith(folder))


REQUESTS = RequestCounts()
STORED = StoredObjects()


def write_pod_report(stored_bytes: int | None, **fields: Any) -> Path | None:
    """Write the report (module docstring) to `$ARGOMLOPS_REPORT_FILE`, atomically; None when it is unset.

    `fields` are the run's own figures (stage, checkpoint, step); the bucket figures are added here.
    """
    target = os.environ.get(REPORT_ENV)
    if not target:
        return None
    gcs: dict[str, Any] = REQUESTS.figures()
    if stored_bytes is not None:
        gcs["storedBytes"] = stored_bytes
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_text(json.dumps({**fields, "gcs": gcs}, sort_keys=True) + "\n")
    os.replace(temp, path)
    return path
