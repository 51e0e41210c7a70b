"""The objects a sweep works on: the MLOpsSweep itself, and its trials, ordinary MLOps objects it owns.

A trial is named `<sweep>-t<number>` (deterministic: a restarted operator gets AlreadyExists, never a
second trial of a number), labelled `argomlops.dev/sweep: <sweep>` and `argomlops.dev/trial: <number>`,
owned by the sweep (kopf.adopt: deleting the sweep deletes its trials), and carries what the search
needs to be rebuilt from the trials alone:

- `argomlops.dev/trial-parameters`: the value of each parameter, by config path (JSON, set at creation);
- `argomlops.dev/trial-progress`: what the search learned of it (JSON, `TrialRecord.progress_json`):
  the values the pruner saw by epoch, Optuna's system attributes (grid cell, ASHA rungs), the final
  objective, and the sweep's verdict (pruned, complete, failed) with its reason;
- `argomlops.dev/held-by-sweep`: set once the sweep's budget held the trial (JSON): `own`, the trial's own
  `budget.maxCost` from before, and `held`, true while the sweep holds it stopped. Raising the sweep's budget
  gives the trial its own cap back and sets `held` false; the annotation goes once the trial has resumed,
  so that between the two the trial never looks like one its own budget stopped.
"""

from __future__ import annotations

import json
from typing import Any

import kopf
import kubernetes

from argomlops.config.loading import apply_values
from argomlops.config.sweep import SweepSpec
from argomlops.operator import client
from argomlops.operator.objects import body_of, custom, fresh, patch_status, temporary
from argomlops.sweeps.study import TrialRecord

LABEL_SWEEP = "argomlops.dev/sweep"
LABEL_TRIAL = "argomlops.dev/trial"
PARAMETERS_ANNOTATION = "argomlops.dev/trial-parameters"
PROGRESS_ANNOTATION = "argomlops.dev/trial-progress"
HOLD_ANNOTATION = "argomlops.dev/held-by-sweep"


def trial_name(sweep: str, number: int) -> str:
    """The MLOps object of trial `number` of `sweep`."""
    return f"{sweep}-t{number}"


def build_trial(
    sweep: str, namespace: str, spec: SweepSpec, number: int, params: dict[str, Any], record: TrialRecord
) -> dict[str, Any]:
    """The MLOps object of a new trial: the template with the trial's parameters set at their paths."""
    return {
        "apiVersion": f"{client.GROUP}/{client.VERSION}",
        "kind": client.KIND,
        "metadata": {
            "name": trial_name(sweep, number),
            "namespace": namespace,
            "labels": {LABEL_SWEEP: sweep, LABEL_TRIAL: str(number)},
            "annotations": {
                PARAMETERS_ANNOTATION: json.dumps(params, sort_keys=True),
                PROGRESS_ANNOTATION: record.progress_json(),
            },
        },
        "spec": apply_values(spec.template_raw(), params),
    }


def record_of(trial: dict[str, Any]) -> TrialRecord:
    """A trial object's record, as its labels and annotations hold it."""
    meta = trial["metadata"]
    annotations = meta.get("annotations") or {}
    try:
        params = json.loads(annotations.get(PARAMETERS_ANNOTATION) or "{}")
    except ValueError:
        params = {}
    return TrialRecord.from_json(int(meta["labels"][LABEL_TRIAL]), params, annotations.get(PROGRESS_ANNOTATION))


def trial_cost(trial: dict[str, Any]) -> float:
    """What a trial cost: its current run and any earlier ones (a person may have changed its spec)."""
    status = trial.get("status") or {}
    history = sum(float(entry.get("costUSD") or 0.0) for entry in status.get("history") or [])
    return float(status.get("costUSD") or 0.0) + history


def fresh_sweep(memo: kopf.Memo, namespace: str, name: str) -> dict[str, Any] | None:
    """The MLOpsSweep as stored now, or None when it is gone."""
    return fresh(memo, namespace, name, plural=client.SWEEP_PLURAL)


def patch_sweep_status(
    memo: kopf.Memo, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
) -> None:
    """Merge-patch the sweep's status; with `resource_version`, only if nobody wrote the sweep since (Conflict)."""
    try:
        patch_status(memo, namespace, name, status, resource_version, plural=client.SWEEP_PLURAL)
    except kubernetes.client.ApiException as exc:
        raise temporary(exc, f"writing the status of MLOpsSweep {namespace}/{name}") from exc


def list_trials(memo: kopf.Memo, sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's trials, by number: MLOps objects with its label that it owns (an older namesake's are not)."""
    meta = sweep["metadata"]
    try:
        found: Any = custom(memo).list_namespaced_custom_object(
            client.GROUP,
            client.VERSION,
            meta["namespace"],
            client.PLURAL,
            label_selector=f"{LABEL_SWEEP}={meta['name']}",
        )
    except kubernetes.client.ApiException as exc:
        raise temporary(exc, f"listing the trials of MLOpsSweep {meta['namespace']}/{meta['name']}") from exc
    owned = [
        item
        for item in found.get("items") or []
        if any(ref.get("uid") == meta.get("uid") for ref in item["metadata"].get("ownerReferences") or [])
        and str((item["metadata"].get("labels") or {}).get(LABEL_TRIAL, "")).isdigit()
    ]
    return sorted(owned, key=lambda item: int(item["metadata"]["labels"][LABEL_TRIAL]))


def create_trial(memo: kopf.Memo, trial: dict[str, Any], sweep: dict[str, Any], logger: Any) -> bool:
    """Create a trial owned by the sweep; False when it exists already (made before a restart)."""
    kopf.adopt(trial, owner=body_of(sweep))
    meta = trial["metadata"]
    try:
        custom(memo).create_namespaced_custom_object(
            client.GROUP, client.VERSION, meta["namespace"], client.PLURAL, trial
        )
    except kubernetes.client.ApiException as exc:
        if exc.status == 409:
            logger.info(f"trial {meta['name']} exists already; not creating it again")
            return False
        raise temporary(exc, f"creating trial {meta['name']}") from exc
    return True


def patch_trial(memo: kopf.Memo, trial: dict[str, Any], patch: dict[str, Any]) -> None:
    """Merge-patch a trial object (its annotations, or its spec's budget)."""
    meta = trial["metadata"]
    try:
        custom(memo).patch_namespaced_custom_object(
            client.GROUP, client.VERSION, meta["namespace"], client.PLURAL, meta["name"], patch
        )
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:  # deleted by a person: nothing to record on it
            raise temporary(exc, f"patching trial {meta['name']}") from exc


def record_patch(record: TrialRecord) -> dict[str, Any]:
    """The patch that stores a trial's record."""
    return {"metadata": {"annotations": {PROGRESS_ANNOTATION: record.progress_json()}}}


def hold_of(trial: dict[str, Any]) -> dict[str, Any] | None:
    """The sweep's hold on a trial (`own`, `held`), or None when its budget never held it."""
    text = ((trial.get("metadata") or {}).get("annotations") or {}).get(HOLD_ANNOTATION)
    try:
        hold = json.loads(text) if text else None
    except ValueError:
        return None
    return hold if isinstance(hold, dict) else None


def hold_patch(trial: dict[str, Any], cap: float) -> dict[str, Any]:
    """The patch that holds a trial at `cap` (its cost now, so its own budget stops it), keeping its own cap."""
    hold = hold_of(trial)
    own = hold["own"] if hold is not None else ((trial.get("spec") or {}).get("budget") or {}).get("maxCost")
    annotations = {HOLD_ANNOTATION: json.dumps({"own": own, "held": True})}
    return {"metadata": {"annotations": annotations}, "spec": {"budget": {"maxCost": cap}}}


def release_patch(trial: dict[str, Any]) -> dict[str, Any]:
    """The patch that gives a held trial its own cap back (null removes maxCost: no cap of its own)."""
    own = (hold_of(trial) or {}).get("own")
    annotations = {HOLD_ANNOTATION: json.dumps({"own": own, "held": False})}
    return {"metadata": {"annotations": annotations}, "spec": {"budget": {"maxCost": own}}}


def forget_patch() -> dict[str, Any]:
    """The patch that drops the hold of a trial that has resumed."""
    return {"metadata": {"annotations": {HOLD_ANNOTATION: None}}}
