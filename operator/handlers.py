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
from argomlops.operator.mlops_status import RUN_FIGURES, WARNING_PHASES, HistoryEntry, read_status, status_patch
from argomlops.operator.settings import OperatorSettings, load_settings
from argomlops.operator.workflow_summary import WorkflowSummary, summarize_workflow
from argomlops.runid import new_run_id
from argomlops.workflows.names import LABEL_MLOPS, LABEL_RUN_ID, k8s_name
from argomlops.workflows.run import run_uri

ANNOTATION_PREFIX = "argomlops.dev"
MIRROR_ATTEMPTS = 5


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: $KUBECONFIG (read now, not at import)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """All kopf tuning, from the operator settings `argomlops operator` put in the memo (settings.py)."""
    # Under plain `kopf run -m argomlops.operator.handlers` nobody filled the memo: read the environment.
    ours: OperatorSettings = memo.get("settings") or load_settings()
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
    patch = status_patch(
        phase="Invalid",
        message=f"spec is invalid ({len(lines)} problem{'s' if len(lines) != 1 else ''}): {lines[0]}",
        errors=lines,
        observed_generation=generation,
    )
    _patch_status(memo, meta["namespace"], meta["name"], patch)
    kopf.warn(_body(body), reason="Invalid", message="; ".join(lines))


def _start_run(memo: kopf.Memo, body: dict[str, Any], spec: MLOpsSpec, generation: int) -> str:
    """Record a new run in status (previous run → history) before creating anything; returns its id."""
    settings: OperatorSettings = memo.settings
    status = read_status(body.get("status"))
    history = list(status.history or [])
    run_id = new_run_id(datetime.now(UTC), [status.run_id or ""] + [entry.run_id or "" for entry in history])
    if status.run_id:
        previous = HistoryEntry(
            run_id=status.run_id,
            phase=status.run_phase or status.phase,
            generation=status.run_generation,
            artifacts=status.artifacts,
            started_at=status.started_at,
            finished_at=status.finished_at,
            cost_usd=status.cost_usd,
        )
        history.insert(0, previous)
    name = body["metadata"]["name"]
    fields: dict[str, Any] = dict.fromkeys(RUN_FIGURES)  # the previous run's figures are not this run's
    fields.update(
        phase="Pending",
        run_phase="Pending",
        message=None,
        errors=None,
        run_id=run_id,
        run_generation=generation,
        workflow=k8s_name(name, run_id),
        config_map=k8s_name(name, run_id),
        artifacts=run_uri(spec, run_id),
        cost_usd=0.0,
        history=history[: settings.history_limit],
    )
    new_status = status_patch(**fields)
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
    status = read_status(body.get("status"))
    if status.observed_generation == generation:
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
    if status.run_generation == generation and status.run_id:
        run_id = status.run_id  # recorded before a restart: finish that run's creation
    else:
        run_id = _start_run(memo, body, spec, generation)
    made = resources.build_config_map(name=name, namespace=namespace, run_id=run_id, spec=spec, generation=generation)
    _create(memo, made, body, logger)
    workflow = resources.build_workflow(name=name, namespace=namespace, run_id=run_id, spec=spec, generation=generation)
    created = _create(memo, workflow, body, logger)
    _patch_status(memo, namespace, name, status_patch(observed_generation=generation))
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
    settings: OperatorSettings = memo.settings
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


def _mirror_into(memo: kopf.Memo, owner: dict[str, Any], run_id: str, run: WorkflowSummary) -> None:
    """Write one run's summary into the owner's status (current run) or history (a past run)."""
    meta, raw = owner["metadata"], owner.get("status") or {}
    status = read_status(raw)
    if status.run_id != run_id:
        _mirror_history(memo, owner, run_id, run)
        return
    fields: dict[str, Any] = {**run.figures(), "run_phase": run.phase}
    # An invalid newer spec keeps the Invalid phase visible; the run's own phase stays in runPhase.
    if status.phase != "Invalid":
        fields.update(phase=run.phase, message=run.message)
    patch = status_patch(**fields)
    if all(raw.get(key) == value for key, value in patch.items()):
        return
    _patch_status(memo, meta["namespace"], meta["name"], patch, meta["resourceVersion"])
    if run.phase != status.run_phase:
        what = f"run {run_id} is {run.phase}" + (f": {run.message}" if run.message else "")
        kind = "Warning" if run.phase in WARNING_PHASES else "Normal"
        kopf.event(_body(owner), type=kind, reason=run.phase, message=what)
    if run.stage and run.stage != status.stage:
        kopf.event(_body(owner), type="Normal", reason="Stage", message=f"run {run_id}: stage {run.stage}")


def _mirror_history(memo: kopf.Memo, owner: dict[str, Any], run_id: str, run: WorkflowSummary) -> None:
    """A past run still changing (it finishes after its successor started): update its history entry."""
    history = list(read_status(owner.get("status")).history or [])
    for index, entry in enumerate(history):
        if entry.run_id == run_id:
            update = entry.model_copy(
                update={
                    "phase": run.phase,
                    "started_at": run.started_at,
                    "finished_at": run.finished_at,
                    "cost_usd": run.cost_usd,
                }
            )
            if update == entry:
                return
            history[index] = update
            meta = owner["metadata"]
            _patch_status(memo, meta["namespace"], meta["name"], status_patch(history=history), meta["resourceVersion"])
            return
