"""Reading and writing the objects the handlers work on, through the official Kubernetes client.

- `fresh`: an MLOps object as stored now (kopf's body may predate a status patch of another handler);
- `patch_status`: a status merge patch, guarded by the resourceVersion read when one is given
  (HTTP 409 → `Conflict`: someone wrote in between; read again);
- `create`: a child created owned by its MLOps object, AlreadyExists meaning "made before a restart";
- `get_workflow` / `stop_workflow`: a run's Workflow, and the Argo way of stopping it (`spec.shutdown:
  Stop`, the patch `argo stop` sends).
"""

from __future__ import annotations

from typing import Any, cast

import kopf
import kubernetes

from argomlops.operator import client
from argomlops.workflows.names import STOPPED_BY_ANNOTATION


class Conflict(Exception):
    """The object changed since it was read (HTTP 409 on a resourceVersion-guarded patch)."""


def body_of(obj: dict[str, Any]) -> kopf.Body:
    """A kopf Body view of an object read through the Kubernetes client (for events and adoption)."""
    return kopf.Body(cast(kopf.RawBody, obj))


def custom(memo: kopf.Memo) -> kubernetes.client.CustomObjectsApi:
    """The custom-objects API of the operator's client."""
    return kubernetes.client.CustomObjectsApi(memo.api)


def temporary(exc: kubernetes.client.ApiException, what: str) -> kopf.TemporaryError:
    """A kopf error that retries the handler in 10 s, naming what failed and how."""
    return kopf.TemporaryError(f"{what}: API answered {exc.status} {exc.reason}", delay=10)


def patch_status(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    status: dict[str, Any],
    resource_version: str | None = None,
    plural: str = client.PLURAL,
) -> None:
    """Merge-patch the status of an MLOps object (or another of our kinds, by `plural`); with
    `resource_version`, only if nobody wrote the object since it was read (Conflict otherwise)."""
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        custom(memo).patch_namespaced_custom_object_status(client.GROUP, client.VERSION, namespace, plural, name, body)
    except kubernetes.client.ApiException as exc:
        if exc.status == 409:
            raise Conflict(f"{plural} {namespace}/{name} changed since it was read") from exc
        raise


def fresh(memo: kopf.Memo, namespace: str, name: str, plural: str = client.PLURAL) -> dict[str, Any] | None:
    """The MLOps object (or another of our kinds, by `plural`) as stored now, or None when it is gone."""
    try:
        obj: Any = custom(memo).get_namespaced_custom_object(client.GROUP, client.VERSION, namespace, plural, name)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        kind = client.SWEEP_KIND if plural == client.SWEEP_PLURAL else client.KIND
        raise temporary(exc, f"reading {kind} {namespace}/{name}") from exc
    return obj


def create(memo: kopf.Memo, obj: dict[str, Any], owner: dict[str, Any], logger: Any) -> bool:
    """Create a child owned by `owner`; False when it exists already (made before a restart)."""
    kopf.adopt(obj, owner=body_of(owner))
    meta = obj["metadata"]
    try:
        if obj["kind"] == "ConfigMap":
            kubernetes.client.CoreV1Api(memo.api).create_namespaced_config_map(meta["namespace"], obj)  # type: ignore[arg-type]
        else:
            custom(memo).create_namespaced_custom_object(
                client.WORKFLOW_GROUP, client.WORKFLOW_VERSION, meta["namespace"], client.WORKFLOW_PLURAL, obj
            )
    except kubernetes.client.ApiException as exc:
        if exc.status == 409:
            logger.info(f"{obj['kind']} {meta['name']} exists already; not creating it again")
            return False
        raise temporary(exc, f"creating {obj['kind']} {meta['name']}") from exc
    return True


def get_workflow(memo: kopf.Memo, namespace: str, name: str) -> dict[str, Any] | None:
    """A Workflow as stored now, or None when there is none (not made yet, or removed by its TTL)."""
    try:
        obj: Any = custom(memo).get_namespaced_custom_object(
            client.WORKFLOW_GROUP, client.WORKFLOW_VERSION, namespace, client.WORKFLOW_PLURAL, name
        )
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise temporary(exc, f"reading Workflow {namespace}/{name}") from exc
    return obj


def stop_workflow(memo: kopf.Memo, namespace: str, name: str, why: str) -> None:
    """Stop a Workflow as `argo stop` does: `spec.shutdown: Stop` (running pods get SIGTERM, nothing is retried)."""
    patch = {"metadata": {"annotations": {STOPPED_BY_ANNOTATION: why}}, "spec": {"shutdown": "Stop"}}
    try:
        custom(memo).patch_namespaced_custom_object(
            client.WORKFLOW_GROUP, client.WORKFLOW_VERSION, namespace, client.WORKFLOW_PLURAL, name, patch
        )
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:  # gone already: nothing left to stop
            raise temporary(exc, f"stopping Workflow {namespace}/{name}") from exc
