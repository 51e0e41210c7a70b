"""The object store of the test API server: what a create, read, write or delete does to the stored objects.

It keeps uid, resourceVersion (one counter for the server), creationTimestamp and generation as the real
server does, isolates a status subresource, refuses changes to immutable ConfigMaps, honours finalizers,
and deletes the dependents of a deleted owner (what kube-controller-manager's garbage collector would).
Every change is told to the listeners (watches, tables) in order.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from kube.errors import ApiError
from kube.kinds import Kind, find_kind
from kube.label_selectors import Selector
from kube.patches import apply_patch

#: (group, version, plural, namespace, name); the namespace is "" for cluster-scoped objects.
Key = tuple[str, str, str, str, str]
#: Called with (kind, "ADDED" | "MODIFIED" | "DELETED", a snapshot of the object) after every change.
Listener = Callable[[Kind, str, dict[str, Any]], None]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """The stored objects of the served kinds, with the rules of the real API server for changing them."""

    def __init__(self, kinds: Iterable[Kind]) -> None:
        self.kinds = tuple(kinds)
        self.objects: dict[Key, dict[str, Any]] = {}
        self.listeners: list[Listener] = []
        self._rv: Iterator[int] = itertools.count(1)
        self.last_rv = 0

    def kind_of(self, group: str, version: str, plural: str) -> Kind:
        """The served kind at this URL, or ApiError 404."""
        return find_kind(self.kinds, group, version, plural)

    def copies(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the live objects of a plural (any group), optionally in one namespace."""
        return [
            copy.deepcopy(obj)
            for (_, _, p, ns, _), obj in sorted(self.objects.items())
            if p == plural and (namespace is None or ns == namespace)
        ]

    # ---- reads ----

    def key(self, kind: Kind, namespace: str | None, name: str) -> Key:
        """The store key of an object, or ApiError 400 for a namespaced kind without a namespace."""
        if kind.namespaced and not namespace:
            raise ApiError(400, "BadRequest", f"{kind.kind} is namespaced: give a namespace")
        return (kind.group, kind.version, kind.plural, namespace or "" if kind.namespaced else "", name)

    def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        """A copy of one object, or ApiError 404."""
        obj = self.objects.get(self.key(kind, namespace, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{kind.plural}.{kind.group or "core"} "{name}" not found')
        return copy.deepcopy(obj)

    def list_objects(self, kind: Kind, namespace: str | None, params: dict[str, str]) -> dict[str, Any]:
        """The `<Kind>List` of the objects a list request selects, at the current resourceVersion."""
        select = Selector.of(params)
        items = [
            copy.deepcopy(obj)
            for (g, v, p, ns, _), obj in sorted(self.objects.items())
            if (g, v, p) == (kind.group, kind.version, kind.plural) and (namespace is None or ns == namespace)
            if select(obj)
        ]
        return {
            "apiVersion": kind.api_version,
            "kind": f"{kind.kind}List",
            "metadata": {"resourceVersion": str(self.last_rv)},
            "items": items,
        }

    # ---- writes ----

    def create(
        self, kind: Kind, namespace: str | None, body: dict[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Store a new object (409 if it exists) and return a copy; the namespace comes from the URL or body."""
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            if namespace and meta.get("namespace") not in (None, namespace):
                raise ApiError(400, "BadRequest", "the namespace of the object does not match the URL")
            meta["namespace"] = namespace = namespace or meta.get("namespace") or "default"
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        key = self.key(kind, namespace, name)
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{kind.plural}.{kind.group or "core"} "{name}" already exists')
        if dry_run:
            return obj
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        if kind.status_subresource:
            obj.pop("status", None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=self._next_rv())
        if kind.group:
            # Custom resources count generations from 1; the core kinds served here have none.
            meta["generation"] = 1
        if kind.namespaced:
            self._ensure_namespace(namespace)
        self.objects[key] = obj
        self._emit(kind, "ADDED", obj)
        return copy.deepcopy(obj)

    def patch(
        self, kind: Kind, namespace: str | None, name: str, sub: str | None, content_type: str, body: Any
    ) -> dict[str, Any]:
        """Patch an object (or its status where `sub` is "status") and return the stored result."""
        old = self.get(kind, namespace, name)
        new = apply_patch(old, content_type, body)
        if isinstance(body, dict):
            # Only merge patches are objects: a resourceVersion in one is a precondition, as in a PUT.
            self._check_fresh(old, body, name)
        return self._update(kind, old, new, sub)

    def replace(self, kind: Kind, namespace: str | None, name: str, sub: str | None, body: Any) -> dict[str, Any]:
        """Replace an object (or its status) as a PUT does, 409 on a stale resourceVersion; return the result."""
        old = self.get(kind, namespace, name)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "replace needs a JSON object")
        self._check_fresh(old, body, name)
        return self._update(kind, old, copy.deepcopy(body), sub)

    def delete(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete an object, or only mark it deleted while finalizers remain; return it as it was or is."""
        old = self.get(kind, namespace, name)
        if old["metadata"].get("finalizers"):
            if not old["metadata"].get("deletionTimestamp"):
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = _now()
                new["metadata"]["resourceVersion"] = self._next_rv()
                self.objects[self.key(kind, namespace, name)] = new
                self._emit(kind, "MODIFIED", new)
                return new
            return old
        self._remove(kind, self.key(kind, namespace, name), old)
        return old

    # ---- the rules behind the writes ----

    @staticmethod
    def _check_fresh(old: dict[str, Any], body: dict[str, Any], name: str) -> None:
        wanted_rv = body.get("metadata", {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'the object "{name}" has been modified; apply to the latest version')

    def _update(self, kind: Kind, old: dict[str, Any], new: dict[str, Any], sub: str | None) -> dict[str, Any]:
        """Keep what a write may not change, bump versions, store, emit; returns the stored object."""
        if kind.status_subresource:
            # The status subresource changes only status; the main resource never changes status.
            if sub == "status":
                new = {**copy.deepcopy(old), "status": new.get("status")}
                if new["status"] is None:
                    new.pop("status")
            elif "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta = new.setdefault("metadata", {})
        for fixed in ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
            else:
                meta.pop(fixed, None)
        new["apiVersion"], new["kind"] = kind.api_version, kind.kind
        frozen = kind.plural == "configmaps" and old.get("immutable")
        if frozen and any(new.get(k) != old.get(k) for k in ("data", "binaryData", "immutable")):
            raise ApiError(422, "Invalid", f'ConfigMap "{meta["name"]}" is invalid: field is immutable')
        # As for custom resources: a change to anything but metadata (and a status subresource) is a new generation.
        ignored = {"metadata", "status"} if kind.status_subresource else {"metadata"}
        spec_changed = {k: v for k, v in old.items() if k not in ignored} != {
            k: v for k, v in new.items() if k not in ignored
        }
        if kind.group and spec_changed:
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if new == old:
            return copy.deepcopy(old)  # a no-op write keeps the resourceVersion, as the real server does
        meta["resourceVersion"] = self._next_rv()
        key = self.key(kind, meta.get("namespace"), meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # The last finalizer of an object being deleted is gone: the deletion completes now.
            self._remove(kind, key, new)
        else:
            self.objects[key] = new
            self._emit(kind, "MODIFIED", new)
        return copy.deepcopy(new)

    def _ensure_namespace(self, namespace: str | None) -> None:
        # Real servers refuse objects in missing namespaces; tests would only have to create them first.
        ns_kind = self.kind_of("", "v1", "namespaces")
        if namespace and self.key(ns_kind, None, namespace) not in self.objects:
            self.create(ns_kind, None, {"metadata": {"name": namespace}})

    def _remove(self, kind: Kind, key: Key, obj: dict[str, Any]) -> None:
        self.objects.pop(key, None)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(kind, "DELETED", obj)
        self._collect_garbage(obj["metadata"].get("uid"))

    def _collect_garbage(self, owner_uid: str | None) -> None:
        """Delete the dependents of a deleted owner (the garbage collector's job in a real cluster)."""
        if not owner_uid:
            return
        for (g, v, p, ns, name), obj in list(self.objects.items()):
            owners = obj.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in owners):
                kind = self.kind_of(g, v, p)
                # An earlier dependent's own dependents may have gone already.
                if (g, v, p, ns, name) in self.objects:
                    self.delete(kind, ns or None, name)

    def _next_rv(self) -> str:
        self.last_rv = next(self._rv)
        return str(self.last_rv)

    def _emit(self, kind: Kind, event: str, obj: dict[str, Any]) -> None:
        # One snapshot for all listeners: later writes replace stored objects but must not change what was told.
        snapshot = copy.deepcopy(obj)
        for listener in self.listeners:
            listener(kind, event, snapshot)
