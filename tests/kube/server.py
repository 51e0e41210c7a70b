"""A Kubernetes API server for tests: kmock 0.8's scaffold plus a small stateful object store.

No kube-apiserver can run on the test machines, so this stands in for one on a real loopback socket.
kmock provides the HTTP server, the discovery documents and the error format; kmock 0.8's own
`KubernetesEmulator` has gaps that stop kopf and the official client (no uid/resourceVersion/
creationTimestamp/generation, 200 on create, a crash on `/api/v1/namespaces`, label selectors ignored,
no PUT, no isolated status subresource, lists without `kind`, `/api/v1` reported as "/v1", watches
sent as octet-stream). `KubeServer` answers every resource URL itself instead and keeps:

- objects with uid, resourceVersion (one counter for the server), creationTimestamp, generation (bumped
  when anything but metadata and a status subresource changes, as for custom resources);
- create (201, namespace taken from the URL, 409 AlreadyExists), get, list, watch, merge / strategic
  (treated as merge) / JSON patch (with `test`, 422 on failure), PUT (409 on a stale resourceVersion),
  delete (finalizers respected);
- a status subresource isolated from the rest of the object where the resource declares one;
- label selectors (`a=b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`) and field selectors on
  `metadata.name` / `metadata.namespace` / `involvedObject.name`;
- watches as JSON lines, resumed from a resourceVersion, ended after `timeoutSeconds`;
- immutable ConfigMaps (422 when `data` changes);
- a stand-in for the garbage collector of kube-controller-manager: deleting an owner deletes the objects
  whose ownerReferences name its uid (what `propagationPolicy: Background` ends in);
- server-side tables for `kubectl get` from the CRD printer columns it was given (`add_printer_columns`).

Not served: protobuf, server-side apply, `/openapi/v2` (use `kubectl --validate=false`), admission.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?/?$"
)
_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}


@dataclass(frozen=True)
class Kind:
    """One served resource: where it lives and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """The apiVersion written into objects of this kind."""
        return f"{self.group}/{self.version}" if self.group else self.version


#: What the argomlops operator, kopf and kubectl touch.
DEFAULT_KINDS = (
    Kind("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",)),
    Kind("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Kind("", "v1", "events", "Event", short_names=("ev",)),
    Kind("", "v1", "pods", "Pod", status_subresource=True, short_names=("po",)),
    Kind("argomlops.dev", "v1alpha1", "mlops", "MLOps", status_subresource=True, short_names=("mlo",)),
    Kind("argoproj.io", "v1alpha1", "workflows", "Workflow", short_names=("wf",)),
    Kind("argoproj.io", "v1alpha1", "workflowtemplates", "WorkflowTemplate", short_names=("wftmpl",)),
    Kind("kopf.dev", "v1", "kopfpeerings", "KopfPeering"),
    Kind("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False),
    Kind("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False),
)


class ApiError(Exception):
    """An error answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> aiohttp.web.Response:
        """The JSON `Status` response of this error."""
        body = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        return aiohttp.web.json_response(body, status=self.code)


@dataclass
class _Watcher:
    kind: Kind
    namespace: str | None
    selector: Any
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(default_factory=asyncio.Queue)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, `null` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def json_patch(target: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 JSON patch (add, remove, replace, test); a failed op raises ApiError 422."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        try:
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            last = parts[-1] if parts else ""
            if op["op"] == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
                if current != op.get("value"):
                    raise ApiError(422, "Invalid", f"test failed at {op['path']}: {current!r} != {op.get('value')!r}")
            elif op["op"] == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif op["op"] in ("add", "replace"):
                if isinstance(parent, list):
                    if last == "-":
                        parent.append(op["value"])
                    elif op["op"] == "add":
                        parent.insert(int(last), op["value"])
                    else:
                        parent[int(last)] = op["value"]
                else:
                    parent[last] = op["value"]
            else:
                raise ApiError(422, "Invalid", f"unsupported JSON patch op {op['op']!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, "Invalid", f"JSON patch {op!r} does not apply: {exc!r}") from exc
    return doc


def parse_label_selector(text: str) -> list[tuple[str, str, set[str]]]:
    """`a=b,c!=d,e,!f,g in (x,y)` → (key, operator, values) requirements."""
    requirements: list[tuple[str, str, set[str]]] = []
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", text):
        part = part.strip()
        if not part:
            continue
        if match := re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", part):
            values = {v.strip() for v in match.group(3).split(",") if v.strip()}
            requirements.append((match.group(1), match.group(2), values))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append((key.strip(), "!=", {value.strip()}))
        elif "=" in part:
            key, value = part.split("==", 1) if "==" in part else part.split("=", 1)
            requirements.append((key.strip(), "=", {value.strip()}))
        elif part.startswith("!"):
            requirements.append((part[1:].strip(), "!", set()))
        else:
            requirements.append((part, "exists", set()))
    return requirements


def labels_match(labels: dict[str, str], requirements: list[tuple[str, str, set[str]]]) -> bool:
    """Whether an object's labels meet every requirement of a parsed selector."""
    for key, op, values in requirements:
        present = key in labels
        value = labels.get(key)
        ok = {
            "=": present and value in values,
            "in": present and value in values,
            "!=": not present or value not in values,
            "notin": not present or value not in values,
            "exists": present,
            "!": not present,
        }[op]
        if not ok:
            return False
    return True


def _field_value(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@dataclass
class _Selector:
    labels: list[tuple[str, str, set[str]]]
    fields: list[tuple[str, bool, str]]

    @classmethod
    def of(cls, params: dict[str, str]) -> _Selector:
        fields = []
        for part in filter(None, params.get("fieldSelector", "").split(",")):
            negate = "!=" in part
            key, value = part.split("!=" if negate else ("==" if "==" in part else "="), 1)
            fields.append((key.strip(), negate, value.strip()))
        return cls(parse_label_selector(params.get("labelSelector", "")), fields)

    def __call__(self, obj: dict[str, Any]) -> bool:
        if not labels_match(obj.get("metadata", {}).get("labels") or {}, self.labels):
            return False
        return all((str(_field_value(obj, key)) == value) != negate for key, negate, value in self.fields)


@attrs.define(kw_only=True)
class KubeServer(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold with a stateful store good enough for kopf, the client and kubectl."""

    kinds: tuple[Kind, ...] = DEFAULT_KINDS
    #: (group, version, plural, namespace, name) → the stored object.
    store: dict[tuple[str, str, str, str, str], dict[str, Any]] = attrs.field(factory=dict)
    _rv: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))
    _last_rv: int = 0
    #: Every change, in order: (resourceVersion, kind plural key, event type, object) for resumed watches.
    _log: list[tuple[int, tuple[str, str, str], str, dict[str, Any]]] = attrs.field(factory=list)
    _watchers: list[_Watcher] = attrs.field(factory=list)
    _printer_columns: dict[tuple[str, str, str], list[dict[str, Any]]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for kind in self.kinds:
            self.resources[f"{kind.api_version}/{kind.plural}"] = kmock.ResourceInfo(
                kind=kind.kind,
                namespaced=kind.namespaced,
                singular=kind.kind.lower(),
                verbs=_VERBS,
                shortnames=set(kind.short_names),
                subresources={"status"} if kind.status_subresource else set(),
            )
        self.put_object("v1", "namespaces", {"metadata": {"name": "default"}})

    # ---- what tests and fixtures call directly (thread-safe only from the server's loop) ----

    def kind_of(self, group: str, version: str, plural: str) -> Kind:
        """The served kind at this URL, or ApiError 404."""
        for kind in self.kinds:
            if (kind.group, kind.version, kind.plural) == (group, version, plural):
                return kind
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group}/{plural})")

    def add_printer_columns(self, group: str, version: str, plural: str, columns: list[dict[str, Any]]) -> None:
        """Serve `kubectl get` tables of a resource with these CRD additionalPrinterColumns."""
        self._printer_columns[(group, version, plural)] = columns

    def put_object(self, api_version: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as a create would (no event if nobody watches yet)."""
        group, _, version = api_version.rpartition("/")
        kind = self.kind_of(group, version, plural)
        return self._create(kind, obj.get("metadata", {}).get("namespace"), obj)

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the live objects of a plural (any group), optionally in one namespace."""
        return [
            copy.deepcopy(obj)
            for (_, _, p, ns, _), obj in sorted(self.store.items())
            if p == plural and (namespace is None or ns == namespace)
        ]

    # ---- HTTP ----

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        match = _PATH.match(raw_request.path)
        # Discovery (/api, /apis/<group>/<version>, /version) stays with kmock; /api/v1 is fixed below.
        if match is None or match["plural"] is None:
            return await super().__call__(raw_request)
        try:
            return await self._serve(raw_request, match)
        except ApiError as exc:
            return exc.response()

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        # kmock 0.8 reports the core group as "/v1"; clients then fail to map core kinds.
        payload = await super()._serve_version(request)
        assert isinstance(payload, dict)
        if request.resource is not None and request.resource.group == "":
            payload["groupVersion"] = "v1"
        for entry in payload.get("resources", []):
            if "/" in entry["name"]:
                # A subresource has no short names of its own (kubectl warns of ambiguity otherwise).
                entry.update(shortNames=[], verbs=["get", "patch", "update"])
        return payload

    async def _serve(self, raw: aiohttp.web.BaseRequest, match: re.Match[str]) -> aiohttp.web.StreamResponse:
        group = match["group"] or ""
        version = match["core"] or match["version"]
        kind = self.kind_of(group, version, match["plural"])
        namespace, name, sub = match["namespace"], match["name"], match["sub"]
        if not kind.namespaced and name is None and namespace is not None:
            # /api/v1/namespaces/<name> is the Namespace object itself.
            namespace, name = None, namespace
        if sub not in (None, "status") or (sub == "status" and not kind.status_subresource):
            raise ApiError(404, "NotFound", f"no subresource {sub!r} on {kind.plural}")
        params = dict(raw.query)
        method = raw.method.upper()
        body: Any = None
        if method in ("POST", "PUT", "PATCH"):
            text = await raw.text()
            if "protobuf" in raw.headers.get("Content-Type", ""):
                raise ApiError(415, "UnsupportedMediaType", "protobuf is not served; send JSON")
            try:
                body = json.loads(text) if text else None
            except ValueError as exc:
                raise ApiError(400, "BadRequest", f"body is not JSON: {exc}") from exc
        if method == "GET" and params.get("watch") in ("true", "1"):
            return await self._watch(raw, kind, namespace, name, params)
        if method == "GET" and name is None:
            return self._respond(raw, kind, self._list(kind, namespace, params))
        if method == "GET":
            return self._respond(raw, kind, self._get(kind, namespace, name))
        if method == "POST" and name is None:
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "create needs a JSON object")
            created = self._create(kind, namespace, body, dry_run="dryRun" in params)
            return aiohttp.web.json_response(created, status=201)
        if method == "PATCH" and name is not None:
            content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
            return aiohttp.web.json_response(self._patch(kind, namespace, name, sub, content_type, body))
        if method == "PUT" and name is not None:
            return aiohttp.web.json_response(self._replace(kind, namespace, name, sub, body))
        if method == "DELETE" and name is not None:
            return aiohttp.web.json_response(self._delete(kind, namespace, name))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not served on {raw.path}")

    # ---- the store ----

    def _key(self, kind: Kind, namespace: str | None, name: str) -> tuple[str, str, str, str, str]:
        if kind.namespaced and not namespace:
            raise ApiError(400, "BadRequest", f"{kind.kind} is namespaced: give a namespace")
        return (kind.group, kind.version, kind.plural, namespace or "" if kind.namespaced else "", name)

    def _get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get(self._key(kind, namespace, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{kind.plural}.{kind.group or "core"} "{name}" not found')
        return copy.deepcopy(obj)

    def _list(self, kind: Kind, namespace: str | None, params: dict[str, str]) -> dict[str, Any]:
        select = _Selector.of(params)
        items = [
            copy.deepcopy(obj)
            for (g, v, p, ns, _), obj in sorted(self.store.items())
            if (g, v, p) == (kind.group, kind.version, kind.plural) and (namespace is None or ns == namespace)
            if select(obj)
        ]
        return {
            "apiVersion": kind.api_version,
            "kind": f"{kind.kind}List",
            "metadata": {"resourceVersion": str(self._last_rv)},
            "items": items,
        }

    def _next_rv(self) -> str:
        self._last_rv = next(self._rv)
        return str(self._last_rv)

    def _emit(self, kind: Kind, event: str, obj: dict[str, Any]) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        snapshot = copy.deepcopy(obj)
        self._log.append((rv, (kind.group, kind.version, kind.plural), event, snapshot))
        for watcher in self._watchers:
            if watcher.kind == kind and self._visible(watcher, snapshot):
                watcher.queue.put_nowait((event, snapshot))

    @staticmethod
    def _visible(watcher: _Watcher, obj: dict[str, Any]) -> bool:
        namespace = obj["metadata"].get("namespace")
        return (watcher.namespace is None or namespace == watcher.namespace) and bool(watcher.selector(obj))

    def _create(
        self, kind: Kind, namespace: str | None, body: dict[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
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
        key = self._key(kind, namespace, name)
        if key in self.store:
            raise ApiError(409, "AlreadyExists", f'{kind.plural}.{kind.group or "core"} "{name}" already exists')
        if dry_run:
            return obj
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        if kind.status_subresource:
            obj.pop("status", None)
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            resourceVersion=self._next_rv(),
        )
        if kind.group:
            meta["generation"] = 1
        if kind.namespaced:
            self._ensure_namespace(namespace)
        self.store[key] = obj
        self._emit(kind, "ADDED", obj)
        self._learn_crd(obj)
        return copy.deepcopy(obj)

    def _learn_crd(self, obj: dict[str, Any]) -> None:
        """A stored CRD teaches the server its printer columns (for `kubectl get` tables)."""
        if obj.get("kind") != "CustomResourceDefinition":
            return
        spec = obj.get("spec") or {}
        for version in spec.get("versions") or []:
            columns = version.get("additionalPrinterColumns")
            if columns:
                key = (spec.get("group", ""), version.get("name", ""), (spec.get("names") or {}).get("plural", ""))
                self._printer_columns[key] = columns

    def _ensure_namespace(self, namespace: str | None) -> None:
        # Real servers refuse objects in missing namespaces; tests would only have to create them first.
        ns_kind = self.kind_of("", "v1", "namespaces")
        if namespace and self._key(ns_kind, None, namespace) not in self.store:
            self._create(ns_kind, None, {"metadata": {"name": namespace}})

    def _store_update(self, kind: Kind, old: dict[str, Any], new: dict[str, Any], sub: str | None) -> dict[str, Any]:
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
        ignored = {"metadata", "status"} if kind.status_subresource else {"metadata"}
        spec_changed = {k: v for k, v in old.items() if k not in ignored} != {
            k: v for k, v in new.items() if k not in ignored
        }
        if kind.group and spec_changed:
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if new == old:
            return copy.deepcopy(old)  # a no-op write keeps the resourceVersion, as the real server does
        meta["resourceVersion"] = self._next_rv()
        key = self._key(kind, meta.get("namespace"), meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(kind, key, new)
        else:
            self.store[key] = new
            self._emit(kind, "MODIFIED", new)
            self._learn_crd(new)
        return copy.deepcopy(new)

    def _patch(
        self, kind: Kind, namespace: str | None, name: str, sub: str | None, content_type: str, body: Any
    ) -> dict[str, Any]:
        old = self._get(kind, namespace, name)
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "a JSON patch is a list of operations")
            new = json_patch(old, body)
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            # Strategic merge is served as a plain merge: lists are replaced, never merged by key.
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "a merge patch is a JSON object")
            wanted_rv = body.get("metadata", {}).get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'the object "{name}" has been modified; apply to the latest version')
            new = merge_patch(old, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"patch type {content_type!r} is not served")
        return self._store_update(kind, old, new, sub)

    def _replace(self, kind: Kind, namespace: str | None, name: str, sub: str | None, body: Any) -> dict[str, Any]:
        old = self._get(kind, namespace, name)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "replace needs a JSON object")
        wanted_rv = body.get("metadata", {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'the object "{name}" has been modified; apply to the latest version')
        return self._store_update(kind, old, copy.deepcopy(body), sub)

    def _delete(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        old = self._get(kind, namespace, name)
        if old["metadata"].get("finalizers"):
            if not old["metadata"].get("deletionTimestamp"):
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                new["metadata"]["resourceVersion"] = self._next_rv()
                self.store[self._key(kind, namespace, name)] = new
                self._emit(kind, "MODIFIED", new)
                return new
            return old
        self._remove(kind, self._key(kind, namespace, name), old)
        return old

    def _remove(self, kind: Kind, key: tuple[str, str, str, str, str], obj: dict[str, Any]) -> None:
        self.store.pop(key, None)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(kind, "DELETED", obj)
        self._collect_garbage(obj["metadata"].get("uid"))

    def _collect_garbage(self, owner_uid: str | None) -> None:
        """Delete the dependents of a deleted owner (the garbage collector's job in a real cluster)."""
        if not owner_uid:
            return
        for (g, v, p, ns, name), obj in list(self.store.items()):
            owners = obj.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in owners):
                kind = self.kind_of(g, v, p)
                if (g, v, p, ns, name) in self.store:
                    self._delete(kind, ns or None, name)

    # ---- responses ----

    def _respond(self, raw: aiohttp.web.BaseRequest, kind: Kind, payload: dict[str, Any]) -> aiohttp.web.Response:
        columns = self._printer_columns.get((kind.group, kind.version, kind.plural))
        if columns and "as=Table" in raw.headers.get("Accept", ""):
            return aiohttp.web.json_response(_table(payload, columns))
        return aiohttp.web.json_response(payload)

    async def _watch(
        self, raw: aiohttp.web.BaseRequest, kind: Kind, namespace: str | None, name: str | None, params: dict[str, str]
    ) -> aiohttp.web.StreamResponse:
        selector = _Selector.of(params)
        if name is not None:
            selector.fields.append(("metadata.name", False, name))
        watcher = _Watcher(kind, namespace, selector)
        since = params.get("resourceVersion")
        # Without a resourceVersion (or "0") a watch starts with the current objects, as the real one does.
        if since in (None, "", "0"):
            backlog = [("ADDED", obj) for obj in self._list(kind, namespace, params)["items"]]
        else:
            backlog = [
                (event, obj)
                for rv, plural_key, event, obj in self._log
                if rv > int(since) and plural_key == (kind.group, kind.version, kind.plural)
                if self._visible(watcher, obj)
            ]
        self._watchers.append(watcher)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        timeout = float(params.get("timeoutSeconds") or 1800)
        deadline = asyncio.get_running_loop().time() + timeout
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
            self._watchers.remove(watcher)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    def close_watches(self) -> None:
        """End every open watch stream (clients reconnect, as after an API server restart)."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)


def _table(payload: dict[str, Any], columns: list[dict[str, Any]]) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of a list or one object, with Name first and the CRD's columns."""
    objs = payload.get("items", [payload])
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    definitions += [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": "",
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = []
    for obj in objs:
        cells: list[Any] = [obj["metadata"]["name"]]
        for column in columns:
            value = _field_value(obj, column["jsonPath"].lstrip("."))
            if column["name"] == "Age" and value:
                created = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                seconds = int((datetime.now(UTC) - created).total_seconds())
                value = f"{seconds // 60}m" if seconds >= 120 else f"{seconds}s"
            cells.append(value)
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "metadata": obj["metadata"]}})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": payload["metadata"].get("resourceVersion", "")},
        "columnDefinitions": definitions,
        "rows": rows,
    }
