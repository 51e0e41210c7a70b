"""The kopf handlers: one run per spec generation of an MLOps object, its Workflows mirrored and charged.

Run with `argomlops operator` (or `kopf run -m argomlops.operator.handlers`). The run's bookkeeping lives
in the MLOps object's status, written before anything is created, so that a restart at any point goes
on with the same run id (and so the same object names) instead of starting a second run:

1. `status.observedGeneration == metadata.generation` → this spec was handled; nothing to do.
2. Invalid spec → `phase: Invalid`, one line per bad field in `status.errors`, a Warning event.
3. `status.runGeneration == generation` → recorded before a restart: finish creating that run.
4. The spec differs from the run's only in its budget (`status.specDigest`) → the same run goes on
   under the new budget: charged and checked at once, so a raised cap resumes it and a lowered one
   stops it (charging.py).
5. Otherwise a new run id; status gets runId/runGeneration/specDigest, the previous run moves to
   `status.history`; then the ConfigMap and the Workflow, both owned by the MLOps object
   (AlreadyExists means "made before a restart"), and `status.observedGeneration = generation`.

Every change of a run's current Workflow is mirrored into the status and charged (charging.py); a
timer charges runs in progress at least every `chargeInterval` seconds when their Workflow is quiet.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from argomlops.config import MLOpsSpec, error_lines
from argomlops.operator import client, objects, resources
from argomlops.operator.accounting import price_of
from argomlops.operator.charging import CHARGED_BY_THE_CLOCK, charge_due, charge_run
from argomlops.operator.mlops_status import RUN_FIGURES, HistoryEntry, MLOpsStatus, read_status, status_patch
from argomlops.operator.run_ids import issue_run_id
from argomlops.operator.settings import OperatorSettings, load_settings
from argomlops.operator.workflow_summary import summarize_workflow
from argomlops.workflows.names import LABEL_MLOPS, LABEL_RUN_ID, k8s_name, workflow_name
from argomlops.workflows.run import run_uri

ANNOTATION_PREFIX = "argomlops.dev"
MIRROR_ATTEMPTS = 5
TICK_SECONDS = 5.0
"""How often the timer looks at a run in progress; it charges one only every `chargeInterval` seconds."""
NO_IMAGE = (
    "spec.image: not set, and this operator has no default trainer image (the chart's trainer.image, "
    "ARGOMLOPS_TRAINER_IMAGE)"
)


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
    prices = ours.prices()
    caps = ", ".join(f"{ns} {cap:g}" for ns, cap in ours.monthly_caps.items())
    logger.info(
        f"argomlops operator: {scope}; prices USD: GPU-hour {prices.gpu_hour}, node-hour {prices.node_hour:.4f}, "
        f"GiB-month {prices.gib_month}, 1000 class A {prices.class_a_per_1000}, 1000 class B "
        f"{prices.class_b_per_1000}; monthly cap {ours.monthly_cap or 'none'}{'; ' + caps if caps else ''}; "
        f"history {ours.history_limit}; watch timeout {ours.watch_timeout}s; "
        f"trainer image {ours.trainer_image or 'none (spec.image required)'}"
    )


def _invalid(memo: kopf.Memo, body: dict[str, Any], generation: int, lines: list[str]) -> None:
    meta = body["metadata"]
    patch = status_patch(
        phase="Invalid",
        message=f"spec is invalid ({len(lines)} problem{'s' if len(lines) != 1 else ''}): {lines[0]}",
        errors=lines,
        observed_generation=generation,
    )
    objects.patch_status(memo, meta["namespace"], meta["name"], patch)
    kopf.warn(objects.body_of(body), reason="Invalid", message="; ".join(lines))


def _start_run(memo: kopf.Memo, body: dict[str, Any], spec: MLOpsSpec, generation: int) -> str:
    """Record a new run in status (previous run → history) before creating anything; returns its id."""
    settings: OperatorSettings = memo.settings
    status = read_status(body.get("status"))
    history = list(status.history or [])
    taken = [status.run_id or ""] + [entry.run_id or "" for entry in history]
    run_id = issue_run_id(spec.artifacts, datetime.now(UTC), taken)  # unique under the artifacts root
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
        workflow=workflow_name(name, run_id),
        config_map=k8s_name(name, run_id),
        artifacts=run_uri(spec, run_id),
        cost_usd=0.0,
        budget=spec.budget.max_cost,
        spec_digest=spec.run_digest(),
        resumes=0,
        history=history[: settings.history_limit],
    )
    new_status = status_patch(**fields)
    try:
        objects.patch_status(memo, body["metadata"]["namespace"], name, new_status, body["metadata"]["resourceVersion"])
    except objects.Conflict as exc:
        raise kopf.TemporaryError(f"{exc}; reading it again", delay=1) from exc
    return run_id


@kopf.on.create(client.GROUP, client.VERSION, client.PLURAL)
@kopf.on.update(client.GROUP, client.VERSION, client.PLURAL, field="spec")
@kopf.on.resume(client.GROUP, client.VERSION, client.PLURAL)
def reconcile(name: str, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Make sure the current spec generation has its run (or its Invalid status); see the module docstring."""
    if namespace is None:
        return  # MLOps is namespaced; kopf passes None only for cluster-scoped kinds
    body = objects.fresh(memo, namespace, name)
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
    if spec.image is None and memo.settings.trainer_image is None:
        _invalid(memo, body, generation, [NO_IMAGE])
        return
    if status.run_generation == generation and status.run_id:
        run_id = status.run_id  # recorded before a restart: finish that run's creation
    elif status.run_id and status.spec_digest == spec.run_digest():
        _rebudget(memo, body, status, spec, generation, logger)
        return
    else:
        run_id = _start_run(memo, body, spec, generation)
    made = resources.build_config_map(name=name, namespace=namespace, run_id=run_id, spec=spec, generation=generation)
    objects.create(memo, made, body, logger)
    workflow = resources.build_workflow(
        name=name,
        namespace=namespace,
        run_id=run_id,
        spec=spec,
        generation=generation,
        image=memo.settings.trainer_image,
    )
    created = objects.create(memo, workflow, body, logger)
    objects.patch_status(memo, namespace, name, status_patch(observed_generation=generation))
    if created:
        kopf.info(
            objects.body_of(body), reason="RunCreated", message=f"run {run_id}: Workflow {workflow['metadata']['name']}"
        )
    logger.info(f"generation {generation}: run {run_id}")


def _rebudget(
    memo: kopf.Memo, body: dict[str, Any], status: MLOpsStatus, spec: MLOpsSpec, generation: int, logger: kopf.Logger
) -> None:
    """Only the budget changed: record it, then charge and check the run at once (it may stop or resume)."""
    meta = body["metadata"]
    fields: dict[str, Any] = {"budget": spec.budget.max_cost, "observed_generation": generation, "errors": None}
    if status.phase == "Invalid":  # the spec is valid again: the run's own phase shows again
        fields.update(phase=status.run_phase, message=None)
    objects.patch_status(memo, meta["namespace"], meta["name"], status_patch(**fields))
    logger.info(f"generation {generation}: budget {spec.budget.max_cost or 'none'} for run {status.run_id}")
    _charge_fresh(memo, meta["namespace"], meta["name"], logger, force=True)


def _charge_fresh(memo: kopf.Memo, namespace: str, name: str, logger: kopf.Logger, force: bool = False) -> None:
    """Read the object and its current Workflow and charge the run; again when someone wrote in between."""
    settings: OperatorSettings = memo.settings
    for _attempt in range(MIRROR_ATTEMPTS):
        owner = objects.fresh(memo, namespace, name)
        if owner is None:
            return
        status = read_status(owner.get("status"))
        now = datetime.now(UTC)
        if not status.workflow or not (force or charge_due(status, now, settings.charge_interval)):
            return
        workflow = objects.get_workflow(memo, namespace, status.workflow)
        try:
            charge_run(memo, owner, workflow, now, logger)
        except objects.Conflict:
            continue
        return
    logger.warning(f"status of MLOps {namespace}/{name} kept changing; the next charge retries")


def _charged_by_the_clock(status: kopf.Status, **_: Any) -> bool:
    return (status.get("runPhase") or status.get("phase")) in CHARGED_BY_THE_CLOCK


@kopf.timer(client.GROUP, client.VERSION, client.PLURAL, interval=TICK_SECONDS, when=_charged_by_the_clock)
def charge_by_the_clock(name: str, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Charge a run in progress whose Workflow has been quiet for `chargeInterval` seconds (and check its caps)."""
    if namespace is not None:
        _charge_fresh(memo, namespace, name, logger)


@kopf.on.event(
    client.WORKFLOW_GROUP,
    client.WORKFLOW_VERSION,
    client.WORKFLOW_PLURAL,
    labels={LABEL_MLOPS: kopf.PRESENT, LABEL_RUN_ID: kopf.PRESENT},
)
def mirror_workflow(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Mirror a run's Workflow into its MLOps object's status and charge the run (charging.py)."""
    if event.get("type") == "DELETED" or namespace is None:
        return
    labels = body.metadata.labels
    # Watch events are not retried, and other handlers write the same status: read, patch guarded by the
    # resourceVersion read, and read again when someone else wrote in between. The Workflow is read
    # fresh too: the timer charges from a fresh read, and an event queued before it must not undo it.
    for _attempt in range(MIRROR_ATTEMPTS):
        owner = objects.fresh(memo, namespace, labels[LABEL_MLOPS])
        workflow = objects.get_workflow(memo, namespace, body.metadata.name)
        if owner is None or workflow is None:
            return
        status = read_status(owner.get("status"))
        try:
            if status.run_id != labels[LABEL_RUN_ID]:
                _mirror_history(memo, owner, labels[LABEL_RUN_ID], workflow)
            elif body.metadata.name == status.workflow:
                charge_run(memo, owner, workflow, datetime.now(UTC), logger)
            # else: an earlier Workflow of this run, stopped by its budget: its figures are final in status.usage
        except objects.Conflict:
            continue
        return
    logger.warning(f"status of MLOps {namespace}/{labels[LABEL_MLOPS]} kept changing; the next Workflow event retries")


def _mirror_history(memo: kopf.Memo, owner: dict[str, Any], run_id: str, workflow: dict[str, Any]) -> None:
    """A past run still changing (it finishes after its successor started): update its history entry.

    A past run is no longer charged interval by interval: its entry shows its Workflow priced at today's prices.
    """
    settings: OperatorSettings = memo.settings
    run = summarize_workflow(workflow, now=datetime.now(UTC))
    history = list(read_status(owner.get("status")).history or [])
    for index, entry in enumerate(history):
        if entry.run_id == run_id:
            update = entry.model_copy(
                update={
                    "phase": run.phase,
                    "started_at": run.started_at,
                    "finished_at": run.finished_at,
                    "cost_usd": round(price_of(run.meters, settings.prices()), 6),
                }
            )
            if update == entry:
                return
            history[index] = update
            meta = owner["metadata"]
            objects.patch_status(
                memo, meta["namespace"], meta["name"], status_patch(history=history), meta["resourceVersion"]
            )
            return


# MLOpsSweep objects are served by the same operator: importing registers their handlers with kopf.
from argomlops.operator import sweep_handlers  # noqa: E402, F401
