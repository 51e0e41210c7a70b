"""The objects one run creates: an immutable ConfigMap holding run.yaml, and the Workflow that runs it.

Both are named `k8s_name(<mlops name>, <run id>)` (deterministic: an operator that restarts mid-way
finds what it created and gets AlreadyExists instead of a duplicate; a Workflow that resumes a run
after a budget stop adds `-r2`, `-r3`, ...), both carry the labels
`argomlops.dev/mlops` and `argomlops.dev/run-id`, and the handlers make the MLOps object their owner.
"""

from __future__ import annotations

from typing import Any

from argomlops.config import MLOpsSpec
from argomlops.workflows.names import CONFIG_KEY, P_IMAGE, k8s_name, run_labels
from argomlops.workflows.run import build_run_workflow

GENERATION_ANNOTATION = "argomlops.dev/generation"
"""The MLOps object's metadata.generation a run was made for."""


def build_config_map(*, name: str, namespace: str, run_id: str, spec: MLOpsSpec, generation: int) -> dict[str, Any]:
    """The run's ConfigMap: `run.yaml` is the script's part of the spec, written out in full.

    It is immutable and one per run, so a field dropped from the spec can never survive in it (a shared,
    merge-patched ConfigMap once kept a stale key alive between runs).
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": k8s_name(name, run_id),
            "namespace": namespace,
            "labels": run_labels(name, run_id),
            "annotations": {GENERATION_ANNOTATION: str(generation)},
        },
        "immutable": True,
        "data": {CONFIG_KEY: spec.run_config().to_yaml()},
    }


def build_workflow(
    *,
    name: str,
    namespace: str,
    run_id: str,
    spec: MLOpsSpec,
    generation: int,
    resumes: int = 0,
    image: str | None = None,
) -> dict[str, Any]:
    """The run's Workflow (built by `argomlops.workflows`), marked with the generation it serves.

    `resumes` counts the budget stops the run was resumed from: each resume is a new Workflow of the same
    run id and ConfigMap, named with a suffix (`workflow_name`), that picks up from the run's checkpoint.
    `image` is the trainer image of a spec without one (the operator's `trainer_image`).
    """
    workflow = build_run_workflow(
        name=name,
        namespace=namespace,
        run_id=run_id,
        config_map=k8s_name(name, run_id),
        spec=spec,
        resumes=resumes,
        image=image,
    )
    # build_run_workflow always writes metadata.namespace and metadata.annotations.
    workflow["metadata"]["annotations"][GENERATION_ANNOTATION] = str(generation)
    return workflow


def image_of(workflow: dict[str, Any] | None) -> str | None:
    """The trainer image a run's Workflow passed to the template, or None (no Workflow, no such argument)."""
    parameters = ((workflow or {}).get("spec", {}).get("arguments") or {}).get("parameters") or []
    return next((str(p["value"]) for p in parameters if p.get("name") == P_IMAGE and p.get("value")), None)
