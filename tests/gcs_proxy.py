"""A proxy between a storage client and the GCS emulator that sees every request, and fails some on purpose.

Point `STORAGE_EMULATOR_HOST` at `GCSProxy(upstream).start().endpoint`: every request is forwarded to
the emulator and recorded (`ProxiedRequest`: method, path, billing class, the object it addresses, the
bytes of object content it carried, the answer's status). From the records:

- `uploads()`: the upload requests that succeeded; `uploaded_bytes()`: the object content they carried
  (a multipart upload's media part, not its metadata or boundaries);
- `final_sizes()`: each object's size after its last successful upload or compose (temporary objects,
  those with `.tmp-` in their name, left out), deleted ones included;
- `counts()`: answered requests by billing class, as `argomlops.trainer.gcs_usage` counts them.

Faults (`Faults`), drawn from a seeded generator so a failing test can be rerun as it was:

- `rate`: that share of requests fails, each as one of `kinds`: "503" and "429" (answered without
  reaching the emulator), "drop" (the connection is closed before anything is forwarded) and "lost"
  (forwarded, the emulator acts on it, then the connection is closed before the answer: the retry
  repeats a request that already happened);
- `burst_every` / `burst_seconds`: every N-th request starts a window in which every request answers 503;
- `first_of_each_action`: the 1st, 3rd, 5th, ... request of every action (upload, compose, list, read,
  metadata, delete) fail in these ways, in turn, so that every kind of request is seen to be retried;
- `down_when`: once a request matches, it and every request after it answer 503 (a bucket down for good).

The standard library's HTTP server cannot drop a connection mid-request cleanly; aiohttp (a test
dependency already, through kmock) can, and forwards with its own client.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
import aiohttp.web

from argomlops.trainer.gcs_usage import OperationClass, operation_class

TEMPORARY_MARK = ".tmp-"
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


@dataclass
class ProxiedRequest:
    """One request as the proxy saw it and what became of it."""

    method: str
    path: str
    query: dict[str, str]
    kind: OperationClass
    object: str | None = None
    payload: int = 0
    status: int = 0
    fault: str | None = None
    size_after: int | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def is_upload(self) -> bool:
        """An objects.insert (simple, multipart, or a resumable upload's request)."""
        return self.path.startswith("/upload/")

    @property
    def action(self) -> str:
        """What the request does: upload, compose, list, read (media), metadata, delete or other."""
        if self.method == "DELETE":
            return "delete"
        if self.is_upload:
            return "upload"
        if self.path.endswith("/compose"):
            return "compose"
        if self.method == "GET" and self.path.rstrip("/").endswith("/o"):
            return "list"
        if self.method == "GET" and (self.query.get("alt") == "media" or self.path.startswith("/download/")):
            return "read"
        return "metadata" if self.method == "GET" else "other"

    @property
    def ok(self) -> bool:
        """The emulator answered it with success."""
        return 200 <= self.status < 300 and self.fault is None


@dataclass
class Faults:
    """Which requests fail, and how (module docstring)."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("503", "429", "drop", "lost")
    burst_every: int = 0
    burst_seconds: float = 0.0
    seed: int = 0
    down_when: Callable[[ProxiedRequest], bool] | None = None
    first_of_each_action: tuple[str, ...] = ()


def _object_of(method: str, path: str, query: dict[str, str], body: bytes, content_type: str) -> tuple[str | None, int]:
    """The object a request addresses (None for a resumable upload's chunk) and the object content it carries."""
    parts = path.split("/")
    at = parts.index("o") if "o" in parts else -1
    if 0 <= at < len(parts) - 1:
        return unquote(parts[at + 1]), 0  # get, delete, patch, compose of one named object
    if not path.startswith("/upload/") or method not in ("POST", "PUT"):
        return None, 0
    kind = query.get("uploadType")
    if kind == "multipart" and "multipart" in content_type:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        pieces = list(message.iter_parts()) if message.is_multipart() else []
        if len(pieces) == 2:
            metadata = json.loads(pieces[0].get_payload(decode=True) or b"{}")
            return metadata.get("name") or query.get("name"), len(pieces[1].get_payload(decode=True) or b"")
    if kind == "resumable" and method == "POST":
        return (json.loads(body).get("name") if body else None) or query.get("name"), 0
    if kind == "resumable":
        return None, len(body)  # a chunk: its object is the one its upload_id was opened for
    return query.get("name"), len(body)


class GCSProxy:
    """A recording, fault-injecting HTTP proxy in front of `upstream`, served from its own thread."""

    def __init__(self, upstream: str, faults: Faults | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults or Faults()
        self.requests: list[ProxiedRequest] = []
        self._rng = random.Random(self.faults.seed)
        self._burst_until = 0.0
        self._down = False
        self._resumable: dict[str, str] = {}  # upload_id -> object name
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gcs-proxy", daemon=True)
        self.endpoint = ""

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> GCSProxy:
        """Serve on a free loopback port; `endpoint` is its http://127.0.0.1:PORT URL."""
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    async def _start(self) -> int:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = aiohttp.web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port: int = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return port

    def stop(self) -> None:
        """Close the server and the loop."""

        async def close() -> None:
            await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    # -- faults ---------------------------------------------------------------------------------

    def _fault_for(self, record: ProxiedRequest) -> str | None:
        faults = self.faults
        with self._lock:
            number = len(self.requests)
            if faults.down_when is not None and (self._down or faults.down_when(record)):
                self._down = True
                return "down"
            # Every other request of an action, so that each retry of a failed one gets through at once.
            seen = sum(1 for r in self.requests if r.action == record.action)
            if seen % 2 == 0 and seen // 2 < len(faults.first_of_each_action):
                return faults.first_of_each_action[seen // 2]
            now = time.monotonic()
            if faults.burst_every and number and number % faults.burst_every == 0:
                self._burst_until = now + faults.burst_seconds
            if now < self._burst_until:
                return "burst"
            if faults.rate and self._rng.random() < faults.rate:
                return self._rng.choice(faults.kinds)
        return None

    # -- the handler ----------------------------------------------------------------------------

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        query = dict(request.query)
        # Object names travel URL-encoded ("a%2Fb"): keep the raw path, as the emulator must see it.
        raw_path = request.rel_url.raw_path
        name, payload = _object_of(request.method, raw_path, query, body, request.headers.get("Content-Type", ""))
        if name is None and "upload_id" in query:
            name = self._resumable.get(query["upload_id"])
        record = ProxiedRequest(
            request.method, raw_path, query, operation_class(request.method, raw_path), name, payload
        )
        record.fault = self._fault_for(record)
        with self._lock:
            self.requests.append(record)
        if record.fault in ("503", "burst", "down", "429"):
            record.status = 429 if record.fault == "429" else 503
            return aiohttp.web.json_response(
                {"error": {"code": record.status, "message": "injected"}}, status=record.status
            )
        if record.fault == "drop":
            return self._drop(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        url = self.upstream + request.raw_path
        async with self._session.request(request.method, url, data=body, headers=headers) as answer:
            data = await answer.read()
            record.status = answer.status
            if record.ok and request.method != "GET" and "json" in answer.headers.get("Content-Type", ""):
                record.size_after = _size_in(data)
            location = answer.headers.get("Location", "")
            if name and "upload_id=" in location:
                self._resumable[location.split("upload_id=", 1)[1].split("&", 1)[0]] = name
            if record.fault == "lost":
                return self._drop(request)
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS}
            return aiohttp.web.Response(body=data, status=answer.status, headers=out)

    @staticmethod
    def _drop(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        """Close the connection without an answer (the client sees a reset connection)."""
        if request.transport is not None:
            request.transport.abort()
        return aiohttp.web.Response(status=503)

    # -- figures --------------------------------------------------------------------------------

    def records(self) -> list[ProxiedRequest]:
        """A copy of the records so far."""
        with self._lock:
            return list(self.requests)

    def uploads(self) -> list[ProxiedRequest]:
        """The upload requests the emulator answered with success."""
        return [r for r in self.records() if r.is_upload and r.ok]

    def uploaded_bytes(self) -> int:
        """Object content carried by successful uploads (temporary objects included: they were sent)."""
        return sum(r.payload for r in self.uploads())

    def final_sizes(self) -> dict[str, int]:
        """Size of every object after its last successful upload or compose, temporary ones left out."""
        sizes: dict[str, int] = {}
        for record in self.records():
            if record.ok and record.object and record.method in ("POST", "PUT") and record.size_after is not None:
                sizes[record.object] = record.size_after
        return {name: size for name, size in sizes.items() if TEMPORARY_MARK not in name.rsplit("/", 1)[-1]}

    def counts(self) -> dict[str, int]:
        """Requests the bucket acted on, by billing class: refused (429, 5xx) and dropped ones are not billed.

        A "lost" request counts: the emulator did the work, only its answer went missing.
        """
        found = {"A": 0, "B": 0, "free": 0}
        for record in self.records():
            if record.fault in (None, "lost") and record.status and record.status != 429 and record.status < 500:
                found[record.kind] += 1
        return found


def _size_in(data: bytes) -> int | None:
    """The `size` of the object resource an upload or compose answered with, if it is one."""
    try:
        resource: Any = json.loads(data)
    except ValueError:
        return None
    if not isinstance(resource, dict) or "size" not in resource:
        return None
    return int(resource["size"])
