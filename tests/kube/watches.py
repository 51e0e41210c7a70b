"""Watch streams: the log of changes, the open watchers, and the JSON-lines responses sent to them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web

from kube.kinds import Kind
from kube.label_selectors import Selector
from kube.store import Store


@dataclass
class Watcher:
    """One open watch: what it selects, and the queue of events for it (None ends it)."""

    kind: Kind
    namespace: str | None
    selector: Selector
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(default_factory=asyncio.Queue)

    def sees(self, obj: dict[str, Any]) -> bool:
        """Whether an object is in this watch's namespace and selection."""
        namespace = obj["metadata"].get("namespace")
        return (self.namespace is None or namespace == self.namespace) and bool(self.selector(obj))


class Watches:
    """Every change of a store, in order, and the watch streams fed from them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: Seconds until a new stream is cut without a clean end (None: only its timeout ends it); see faults.py.
        self.cut_after: Callable[[], float | None] = lambda: None
        self.cuts = 0
        #: Every change, in order: (resourceVersion, (group, version, plural), event type, object) for resumed watches.
        self.log: list[tuple[int, tuple[str, str, str], str, dict[str, Any]]] = []
        self.watchers: list[Watcher] = []

    def record(self, kind: Kind, event: str, obj: dict[str, Any]) -> None:
        """Log a change and queue it for the watchers that see it (a store listener)."""
        rv = int(obj["metadata"]["resourceVersion"])
        self.log.append((rv, (kind.group, kind.version, kind.plural), event, obj))
        for watcher in self.watchers:
            if watcher.kind == kind and watcher.sees(obj):
                watcher.queue.put_nowait((event, obj))

    async def stream(
        self, raw: aiohttp.web.BaseRequest, kind: Kind, namespace: str | None, name: str | None, params: dict[str, str]
    ) -> aiohttp.web.StreamResponse:
        """Answer a watch request with JSON lines of events until `timeoutSeconds`, close, or disconnect."""
        selector = Selector.of(params)
        if name is not None:
            selector.fields.append(("metadata.name", False, name))
        watcher = Watcher(kind, namespace, selector)
        since = params.get("resourceVersion")
        # Without a resourceVersion (or "0") a watch starts with the current objects, as the real one does.
        if since in (None, "", "0"):
            backlog = [("ADDED", obj) for obj in self.store.list_objects(kind, namespace, params)["items"]]
        else:
            backlog = [
                (event, obj)
                for rv, plural_key, event, obj in self.log
                if rv > int(since) and plural_key == (kind.group, kind.version, kind.plural)
                if watcher.sees(obj)
            ]
        self.watchers.append(watcher)
        # kmock 0.8 sends watches as octet-stream; the official client wants JSON lines.
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        timeout = float(params.get("timeoutSeconds") or 1800)
        cut = self.cut_after()
        deadline = asyncio.get_running_loop().time() + min(timeout, cut if cut is not None else timeout)
        try:
            for event, obj in backlog:
                await response.write(json.dumps({"type": event, "object": obj}).encode() + b"\n")
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), timeout=left)
                except TimeoutError:
                    break
                if item is None:
                    break
                await response.write(json.dumps({"type": item[0], "object": item[1]}).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watchers.remove(watcher)
        if cut is not None and cut < timeout and raw.transport is not None:
            # Dropped, not ended: the client sees a connection closed in the middle of the stream.
            raw.transport.abort()
            self.cuts += 1
            return response
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    def close(self) -> None:
        """End every open watch stream (clients reconnect, as after an API server restart)."""
        for watcher in self.watchers:
            watcher.queue.put_nowait(None)
