"""A Kubernetes API server for tests: kmock 0.8's scaffold plus a small stateful object store.

No kube-apiserver can run on the test machines, so this stands in for one on a real loopback socket.
kmock provides the HTTP server, the discovery documents and the error format; kmock 0.8's own
`KubernetesEmulator` has gaps that stop kopf and the official client (no uid/resourceVersion/
creationTimestamp/generation, 200 on create, a crash on `/api/v1/namespaces`, label selectors ignored,
no PUT, no isolated status subresource, lists without `kind`, `/api/v1` reported as "/v1", watches
sent as octet-stream). `KubeServer` (this module) answers every resource URL itself instead, routes each
request to the modules beside it, and fixes the "/v1" of the core group's discovery document:

- `kinds`: the served resources (`Kind`, `DEFAULT_KINDS`);
- `store`: objects with uid, resourceVersion (one counter for the server), creationTimestamp, generation
  (bumped when anything but metadata and a status subresource changes, as for custom resources);
  create (201, namespace taken from the URL, 409 AlreadyExists), get, list, PUT (409 on a stale
  resourceVersion), delete (finalizers respected); a status subresource isolated from the rest of the
  object where the resource declares one; immutable ConfigMaps (422 when `data` changes); a stand-in for
  the garbage collector of kube-controller-manager: deleting an owner deletes the objects whose
  ownerReferences name its uid (what `propagationPolicy: Background` ends in);
- `patches`: merge / strategic (treated as merge) / JSON patch (the `jsonpatch` library; a failed `test`
  is a 422);
- `selectors`: label selectors (`a=b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`) and field
  selectors on `metadata.name` / `metadata.namespace` / `involvedObject.name`;
- `watches`: watches as JSON lines, resumed from a resourceVersion, ended after `timeoutSeconds`;
- `tables`: server-side tables for `kubectl get` from the CRD printer columns it was given
  (`add_printer_columns`) or read from a stored CRD;
- `errors`: `ApiError`, answered as a `Status` object;
- `faults`: misbehaviour on request (`misbehave`): 500s, 429s with Retry-After, answers lost after a
  write, 409s on guarded updates, watch streams cut every few seconds.

Not served: protobuf, server-side apply, `/openapi/v2` (use `kubectl --validate=false`), admission.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from kube.errors import ApiError
from kube.faults import Faults
from kube.kinds import DEFAULT_KINDS, Kind
from kube.label_selectors import labels_match, parse_label_selector
from kube.store import Store
from kube.tables import Tables
from kube.watches import Watches

# Importable from here as before the server was split into modules.
__all__ = ["DEFAULT_KINDS", "ApiError", "Kind", "KubeServer", "labels_match", "parse_label_selector"]

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?/?$"
)
_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}


@attrs.define(kw_only=True)
class KubeServer(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold with a stateful store good enough for kopf, the client and kubectl."""

    kinds: tuple[Kind, ...] = DEFAULT_KINDS
    store: Store = attrs.field(init=False)
    watches: Watches = attrs.field(init=False)
    tables: Tables = attrs.field(init=False, factory=Tables)
    faults: Faults = attrs.field(init=False, factory=Faults)

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
        self.store = Store(self.kinds)
        self.watches = Watches(self.store)
        self.store.listeners += [self.watches.record, self.tables.learn]
        self.put_object("v1", "namespaces", {"metadata": {"name": "default"}})

    # ---- what tests and fixtures call directly (thread-safe only from the server's loop) ----

    def kind_of(self, group: str, version: str, plural: str) -> Kind:
        """The served kind at this URL, or ApiError 404."""
        return self.store.kind_of(group, version, plural)

    def add_printer_columns(self, group: str, version: str, plural: str, columns: list[dict[str, Any]]) -> None:
        """Serve `kubectl get` tables of a resource with these CRD additionalPrinterColumns."""
        self.tables.add(group, version, plural, columns)

    def put_object(self, api_version: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as a create would (no event if nobody watches yet)."""
        group, _, version = api_version.rpartition("/")
        kind = self.kind_of(group, version, plural)
        return self.store.create(kind, obj.get("metadata", {}).get("namespace"), obj)

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the live objects of a plural (any group), optionally in one namespace."""
        return self.store.copies(plural, namespace)

    def misbehave(self, faults: Faults) -> None:
        """Fail requests and cut watches from now on as `faults` says (`Faults()`: behave again)."""
        self.faults = faults
        self.watches.cut_after = faults.watch_cut_after

    def close_watches(self) -> None:
        """End every open watch stream (clients reconnect, as after an API server restart)."""
        self.watches.close()

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
            return await self.watches.stream(raw, kind, namespace, name, params)
        guarded = method == "PUT" or (isinstance(body, dict) and bool(body.get("metadata", {}).get("resourceVersion")))
        refusal = self.faults.refusal(method, guarded)
        if refusal is not None:
            raise refusal
        response = self._answer(raw, kind, method, namespace, name, sub, params, body)
        if self.faults.loses_answer(method):
            raise ApiError(500, "InternalError", "Internal error occurred: the write was done, its answer lost")
        return response

    def _answer(
        self,
        raw: aiohttp.web.BaseRequest,
        kind: Kind,
        method: str,
        namespace: str | None,
        name: str | None,
        sub: str | None,
        params: dict[str, str],
        body: Any,
    ) -> aiohttp.web.StreamResponse:
        """Serve a request that is not a watch: read or write the store."""
        if method == "GET" and name is None:
            return self._respond(raw, kind, self.store.list_objects(kind, namespace, params))
        if method == "GET":
            return self._respond(raw, kind, self.store.get(kind, namespace, name))
        if method == "POST" and name is None:
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "create needs a JSON object")
            created = self.store.create(kind, namespace, body, dry_run="dryRun" in params)
            return aiohttp.web.json_response(created, status=201)
        if method == "PATCH" and name is not None:
            content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
            return aiohttp.web.json_response(self.store.patch(kind, namespace, name, sub, content_type, body))
        if method == "PUT" and name is not None:
            return aiohttp.web.json_response(self.store.replace(kind, namespace, name, sub, body))
        if method == "DELETE" and name is not None:
            return aiohttp.web.json_response(self.store.delete(kind, namespace, name))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not served on {raw.path}")

    def _respond(self, raw: aiohttp.web.BaseRequest, kind: Kind, payload: dict[str, Any]) -> aiohttp.web.Response:
        # kubectl asks for `as=Table` and falls back to the plain object where no table is served.
        table = self.tables.table_of(kind, payload) if "as=Table" in raw.headers.get("Accept", "") else None
        return aiohttp.web.json_response(payload if table is None else table)
