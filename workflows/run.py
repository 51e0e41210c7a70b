"""The per-run Workflow: one `argoproj.io/v1alpha1` Workflow that runs the `argomlops-train` template."""

from __future__ import annotations

import json
import shlex
from typing import Any

from hera.workflows import Parameter, Workflow
from hera.workflows.models import Metadata, WorkflowTemplateRef

from argomlops.config import STAGE_ORDER, MLOpsSpec
from argomlops.workflows import names
from argomlops.workflows.placement import node_selector, placement_json, pod_spec_patch

TITLE_ANNOTATION = "workflows.argoproj.io/title"
DESCRIPTION_ANNOTATION = "workflows.argoproj.io/description"
ARTIFACTS_ANNOTATION = "argomlops.dev/artifacts"
MLOPS_ANNOTATION = "argomlops.dev/mlops-object"
PLACEMENT_ANNOTATION = "argomlops.dev/placement"
"""The run's `spec.placement` as JSON: what its pods were placed with (GPUs per pod, for the cost)."""


def run_uri(spec: MLOpsSpec, run_id: str) -> str:
    """`<artifacts>/<run-id>`: where the run writes."""
    return f"{spec.artifacts.rstrip('/')}/{run_id}"


def bucket_and_key(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> (`bucket`, `a/b`); a local path (no bucket: nothing for Argo to write) -> ("", path)."""
    if not uri.startswith("gs://"):
        return "", uri.strip("/")
    bucket, _, key = uri[len("gs://") :].partition("/")
    return bucket, key.strip("/")


def report_uri(spec: MLOpsSpec, run_id: str) -> str:
    """Where the run's page is: `<artifacts>/<run-id>/report.html`."""
    return f"{run_uri(spec, run_id)}/report.html"


def report_link(spec: MLOpsSpec, run_id: str) -> str:
    """The run's page as Markdown for the Argo UI: a browser link for gs:// (the viewer's Google login)."""
    uri = report_uri(spec, run_id)
    bucket, key = bucket_and_key(uri)
    return f"[{uri}](https://storage.cloud.google.com/{bucket}/{key})" if bucket else f"`{uri}`"


def queue_key(spec: MLOpsSpec) -> str:
    """The run's key in the GPU queue ConfigMap: its accelerator, or `cpu` for a CPU-only run.

    A CPU-only run waits on a semaphore of its own, so it never holds (or waits for) a GPU's slot.
    """
    return spec.placement.accelerator if spec.placement.gpus > 0 else names.CPU_QUEUE_KEY


def run_parameters(*, run_id: str, config_map: str, spec: MLOpsSpec, image: str | None = None) -> dict[str, str]:
    """The template's arguments for one run, every value a string (Argo parameters are strings).

    `image` is the trainer image of a spec without one (the operator's default, the chart's
    trainer.image); with neither, `image` is left out and the template's own default applies.
    """
    placement = spec.placement
    git = spec.git
    bucket, run_key = bucket_and_key(run_uri(spec, run_id))
    trainer_image = spec.image or image
    return {
        names.P_RUN_ID: run_id,
        names.P_CONFIG_MAP: config_map,
        names.P_ARTIFACTS: spec.artifacts,
        names.P_ARTIFACTS_BUCKET: bucket,
        names.P_RUN_KEY: run_key,
        **({names.P_IMAGE: trainer_image} if trainer_image else {}),
        **{names.P_RUN_STAGE[stage]: "true" if stage in spec.stages else "false" for stage in STAGE_ORDER},
        names.P_QUEUE: queue_key(spec),
        names.P_MAX_PREEMPTIONS: str(placement.max_preemptions),
        names.P_GIT_REPO: git.repo if git else "",
        names.P_GIT_REVISION: git.revision if git else "",
        # Only the Secret's name: Argo reads the credentials from it when it clones.
        names.P_GIT_SECRET: (git.secret or "") if git else "",
        # The command runs through `sh -c` in the checkout; shlex quoting keeps each argument whole.
        names.P_COMMAND: shlex.join(git.command) if git else "",
    }


def build_run_workflow(
    *,
    name: str,
    namespace: str,
    run_id: str,
    config_map: str,
    spec: MLOpsSpec,
    labels: dict[str, str] | None = None,
    resumes: int = 0,
    image: str | None = None,
) -> dict[str, Any]:
    """Return the Workflow that runs one MLOps run through the `argomlops-train` WorkflowTemplate.

    The Workflow is named `workflow_name(name, run_id, resumes)`, carries `labels` (plus the two argomlops labels) on
    itself and on every pod, passes the run as template arguments and places every pod as
    `spec.placement` says (`placement.py`). Nothing is sent anywhere: the caller creates the dict
    through the Kubernetes API.

    Args:
        name: the MLOps object's name.
        namespace: where the Workflow is created (the MLOps object's namespace).
        run_id: the run id, e.g. `2026-11-27_09h01m09s`.
        config_map: the per-run ConfigMap holding `run.yaml`.
        spec: the validated MLOps spec.
        labels: extra labels for the Workflow and its pods (the two run labels are always added).
        resumes: how many times the run was resumed after a budget stop (0: its first Workflow).
        image: the trainer image when `spec.image` is absent (the operator's default).
    """
    all_labels = {**(labels or {}), **names.run_labels(name, run_id)}
    uri = run_uri(spec, run_id)
    what = f"git {spec.git.repo}@{spec.git.revision}" if spec.git else "stages " + ", ".join(spec.stages)
    annotations = {
        # The Argo UI shows these instead of the generated name: they lead back to the MLOps object.
        TITLE_ANNOTATION: f"{name} {run_id}",
        # Markdown (Argo UI >= 3.6 renders it): the run's page is one click from the Workflow list.
        DESCRIPTION_ANNOTATION: f"MLOps {namespace}/{name}, run {run_id}: {what}; artifacts in {uri}; "
        f"report: {report_link(spec, run_id)}",
        ARTIFACTS_ANNOTATION: uri,
        MLOPS_ANNOTATION: f"{namespace}/{name}",
        PLACEMENT_ANNOTATION: placement_json(spec.placement),
    }
    parameters = run_parameters(run_id=run_id, config_map=config_map, spec=spec, image=image)
    workflow = Workflow(
        name=names.workflow_name(name, run_id, resumes),
        namespace=namespace,
        labels=all_labels,
        annotations=annotations,
        workflow_template_ref=WorkflowTemplateRef(name=names.TEMPLATE_NAME),
        arguments=[Parameter(name=key, value=value) for key, value in parameters.items()],
        active_deadline_seconds=spec.placement.active_deadline_seconds,
        node_selector=node_selector(spec.placement) or None,
        # JSON, as Argo's podSpecPatch takes it; a plain value, never an expression.
        pod_spec_patch=json.dumps(pod_spec_patch(spec.placement), sort_keys=True),
        # Argo does not copy a Workflow's labels to its pods; podMetadata does.
        pod_metadata=Metadata(labels=all_labels),
    )
    return workflow.to_dict()
