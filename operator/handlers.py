"""The kopf handlers: one run per spec generation of an MLOps object, and its Workflow mirrored into status.

Run with `argomlops operator` (or `kopf run -m argomlops.operator.handlers`). The run's bookkeeping lives
in the MLOps object's status, written before anything is created, so that a restart at any point goes
on with the same run id (and so the same object names) instead of starting a second run:

1. `status.observedGeneration == metadata.generation` → this spec was handled; nothing to do.
2. Invalid spec → `phase: Invalid`, one line per bad field in `status.errors`, a Warning event.
3. `status.runGeneration != generation` → a new run id; status gets runId/runGeneration, the previous
   run moves to `status.history`.
4. ConfigMap, then Workflow, both owned by the MLOps object; AlreadyExists means "made before a restart".
5. `status.observedGeneration = generation`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast

import kopf
import kubernetes
from pydantic import ValidationError

from argomlops.config import MLOpsSpec, error_lines
from argomlops.operator import client, resources
from argomlops.operator.settings import Settings, load_settings
from argomlops.operator.status import summarize_workflow
from argomlops.runid import new_run_id
from argomlops.workflows.names import LABEL_MLOPS, LABEL_RUN_ID, k8s_name
from argomlops.workflows.run import run_uri

ANNOTATION_PREFIX = "argomlops.dev"
RUN_FIELDS = ("stage", "epoch", "progress", "startedAt", "finishedAt", "attempts", "preemptions", "gpuHours")
WARNING_PHASES = {"Failed", "Invalid"}
MIRROR_ATTEMPTS = 5


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: $KUBECONFIG (read now, not at import)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """All kopf tuning, from the operator settings (see argomlops.operator.settings)."""
    ours = load_settings()
    settings.watching.server_timeout = ours.watch_timeout
    settings.watching.client_timeout = ours.watch_timeout + 30
    settings.posting.level = logging.INFO
    # Keep kopf's bookkeeping in annotations: the status schema is ours and structural (no status.kopf).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    memo.settings = ours
    memo.api = client.api_client()
    scope = "every namespace" if ours.clusterwide else ", ".join(ours.namespaces)
    logger.info(
        f"argomlops operator: {scope}; price {ours.price_per_gpu_hour} USD/GPU-hour; "
        f"history {ours.history_limit}; watch timeout {ours.watch_timeout}s"
    )


def _body(obj: dict[str, Any]) -> kopf.Body:
    """A kopf Body view of an object read through the Kubernetes client (for events and adoption)."""
    return kopf.Body(cast(kopf.RawBody, obj))


def _custom(memo: kopf.Memo) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(memo.api)


class Conflict(Exception):
    """The object changed since it was read (HTTP 409 on a resourceVersion-guarded patch)."""


def _patch_status(
    memo: kopf.Memo, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
) -> None:
    """Merge-patch the status; with `resource_version`, only if nobody wrote the object since it was read."""
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        _custom(memo).patch_namespaced_custom_object_status(
            client.GROUP, client.VERSION, namespace, client.PLURAL, name, body
        )
    except kubernetes.client.ApiException as exc:
        if exc.status == 409:
            raise Conflict(f"MLOps {namespace}/{name} changed since it was read") from exc
        raise


def _temporary(exc: kubernetes.client.ApiException, what: str) -> kopf.TemporaryError:
    return kopf.TemporaryError(f"{what}: API answered {exc.status} {exc.reason}", delay=10)


def _fresh(memo: kopf.Memo, namespace: str, name: str) -> dict[str, Any] | None:
    """The MLOps object as stored now (kopf's body may predate a status patch of an earlier handler)."""
    try:
        obj: Any = _custom(memo).get_namespaced_custom_object(
            client.GROUP, client.VERSION, namespace, client.PLURAL, name
        )
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise _temporary(exc, f"reading MLOps {namespace}/{name}") from exc
    return obj


def _create(memo: kopf.Memo, obj: dict[str, Any], owner: dict[str, Any], logger: kopf.Logger) -> bool:
    """Create a child owned by `owner`; False when it exists already (made before a restart)."""
    kopf.adopt(obj, owner=_body(owner))
    meta = obj["metadata"]
    try:
        if obj["kind"] == "ConfigMap":
            kubernetes.client.CoreV1Api(memo.api).create_namespaced_config_map(meta["namespace"], obj)  # type: ignore[arg-type]
        else:
            _custom(memo).create_namespaced_custom_object(
                client.WORKFLOW_GROUP, client.WORKFLOW_VERSION, meta["namespace"], client.WORKFLOW_PLURAL, obj
            )
    except kubernetes.client.ApiException as exc:
        if exc.status == 409:
            logger.info(f"{obj['kind']} {meta['name']} exists already; not creating it again")
            return False
        raise _temporary(exc, f"creating {obj['kind']} {meta['name']}") from exc
    return True


def _invalid(memo: kopf.Memo, body: dict[str, Any], generation: int, lines: list[str]) -> None:
    meta = body["metadata"]
    _patch_status(
        memo,
        meta["namespace"],
        meta["name"],
        {
            "phase": "Invalid",
            "message": f"spec is invalid ({len(lines)} problem{'s' if len(lines) != 1 else ''}): {lines[0]}",
            "errors": lines,
            "observedGeneration": generation,
        },
    )
    kopf.warn(_body(body), reason="Invalid", message="; ".join(lines))


def _start_run(memo: kopf.Memo, body: dict[str, Any], spec: MLOpsSpec, generation: int) -> str:
    """Record a new run in status (previous run → history) before creating anything; returns its id."""
    settings: Settings = memo.settings
    status = body.get("status") or {}
    history = list(status.get("history") or [])
    taken = [status.get("runId") or ""] + [entry.get("runId", "") for entry in history]
    run_id = new_run_id(datetime.now(UTC), taken)
    if status.get("runId"):
        previous = {"runId": status["runId"], "phase": status.get("runPhase") or status.get("phase")}
        previous.update({key: status.get(key) for key in ("artifacts", "startedAt", "finishedAt", "costUSD")})
        previous["generation"] = status.get("runGeneration")
        history.insert(0, previous)
    name = body["metadata"]["name"]
    new_status: dict[str, Any] = {
        "phase": "Pending",
        "runPhase": "Pending",
        "message": None,
        "errors": None,
        "runId": run_id,
        "runGeneration": generation,
        "workflow": k8s_name(name, run_id),
        "configMap": k8s_name(name, run_id),
        "artifacts": run_uri(spec, run_id),
        "costUSD": 0.0,
        "history": history[: settings.history_limit],
    }
    new_status.update(dict.fromkeys(RUN_FIELDS))
    try:
        _patch_status(memo, body["metadata"]["namespace"], name, new_status, body["metadata"]["resourceVersion"])
    except Conflict as exc:
        raise kopf.TemporaryError(f"{exc}; reading it again", delay=1) from exc
    return run_id


@kopf.on.create(client.GROUP, client.VERSION, client.PLURAL)
@kopf.on.update(client.GROUP, client.VERSION, client.PLURAL, field="spec")
@kopf.on.resume(client.GROUP, client.VERSION, client.PLURAL)
def reconcile(name: str, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Make sure the current spec generation has its run (or its Invalid status); see the module docstring."""
    if namespace is None:
        return  # MLOps is namespaced; kopf passes None only for cluster-scoped kinds
    body = _fresh(memo, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    generation = int(body["metadata"].get("generation") or 1)
    status = body.get("status") or {}
    if status.get("observedGeneration") == generation:
        return
    raw = body.get("spec")
    if not isinstance(raw, dict):
        _invalid(memo, body, generation, [f"spec: must be a mapping, got {type(raw).__name__}"])
        return
    try:
        spec = MLOpsSpec.model_validate(raw)
    except ValidationError as exc:
        lines = error_lines(exc)
        logger.warning(f"spec generation {generation} is invalid: {'; '.join(lines)}")
        _invalid(memo, body, generation, lines)
        return
    if status.get("runGeneration") == generation and status.get("runId"):
        run_id = status["runId"]  # recorded before a restart: finish that run's creation
    else:
        run_id = _start_run(memo, body, spec, generation)
    made = resources.build_config_map(name=name, namespace=namespace, run_id=run_id, spec=spec, generation=generation)
    _create(memo, made, body, logger)
    workflow = resources.build_workflow(name=name, namespace=namespace, run_id=run_id, spec=spec, generation=generation)
    created = _create(memo, workflow, body, logger)
    _patch_status(memo, namespace, name, {"observedGeneration": generation})
    if created:
        kopf.info(_body(body), reason="RunCreated", message=f"run {run_id}: Workflow {workflow['metadata']['name']}")
    logger.info(f"generation {generation}: run {run_id}")


@kopf.on.event(
    client.WORKFLOW_GROUP,
    client.WORKFLOW_VERSION,
    client.WORKFLOW_PLURAL,
    labels={LABEL_MLOPS: kopf.PRESENT, LABEL_RUN_ID: kopf.PRESENT},
)
def mirror_workflow(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Copy a run's Workflow state into its MLOps object's status; post an event on each change of phase or stage."""
    if event.get("type") == "DELETED" or namespace is None:
        return
    labels = body.metadata.labels
    settings: Settings = memo.settings
    run = summarize_workflow(dict(body), price_per_gpu_hour=settings.price_per_gpu_hour, now=datetime.now(UTC))
    # Watch events are not retried, and the run handler writes the same status: read, patch guarded by the
    # resourceVersion read, and read again when someone else wrote in between.
    for _attempt in range(MIRROR_ATTEMPTS):
        owner = _fresh(memo, namespace, labels[LABEL_MLOPS])
        if owner is None:
            return
        try:
            _mirror_into(memo, owner, labels[LABEL_RUN_ID], run)
        except Conflict:
            continue
        return
    logger.warning(f"status of MLOps {namespace}/{labels[LABEL_MLOPS]} kept changing; the next Workflow event retries")


def _mirror_into(memo: kopf.Memo, owner: dict[str, Any], run_id: str, run: dict[str, Any]) -> None:
    """Write one run's summary into the owner's status (current run) or history (a past run)."""
    meta, status = owner["metadata"], owner.get("status") or {}
    if status.get("runId") != run_id:
        _mirror_history(memo, owner, run_id, run)
        return
    patch = {key: run[key] for key in (*RUN_FIELDS, "costUSD")}
    patch["runPhase"] = run["phase"]
    # An invalid newer spec keeps the Invalid phase visible; the run's own phase stays in runPhase.
    if status.get("phase") != "Invalid":
        patch["phase"] = run["phase"]
        patch["message"] = run["message"]
    if all(status.get(key) == value for key, value in patch.items()):
        return
    _patch_status(memo, meta["namespace"], meta["name"], patch, meta["resourceVersion"])
    if run["phase"] != status.get("runPhase"):
        what = f"run {run_id} is {run['phase']}" + (f": {run['message']}" if run["message"] else "")
        kind = "Warning" if run["phase"] in WARNING_PHASES else "Normal"
        kopf.event(_body(owner), type=kind, reason=run["phase"], message=what)
    if run["stage"] and run["stage"] != status.get("stage"):
        kopf.event(_body(owner), type="Normal", reason="Stage", message=f"run {run_id}: stage {run['stage']}")


def _mirror_history(memo: kopf.Memo, owner: dict[str, Any], run_id: str, run: dict[str, Any]) -> None:
    """A past run still changing (it finishes after its successor started): update its history entry."""
    history = list((owner.get("status") or {}).get("history") or [])
    for entry in history:
        if entry.get("runId") == run_id:
            update = {key: run[key] for key in ("phase", "startedAt", "finishedAt", "costUSD")}
            if all(entry.get(key) == value for key, value in update.items()):
                return
            entry.update(update)
            meta = owner["metadata"]
            _patch_status(memo, meta["namespace"], meta["name"], {"history": history}, meta["resourceVersion"])
            return
