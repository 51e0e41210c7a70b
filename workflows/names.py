"""Names shared by the WorkflowTemplate, the per-run Workflow, the operator and the Helm chart.

Everything another part must spell the same way lives here: the template's name, its parameter names,
the GPU queue's ConfigMap, the trainer's service account, the labels, and the mapping from an MLOps
name and a run id to a Kubernetes object name.
"""

from __future__ import annotations

import hashlib
import re

from argomlops.config import STAGE_ORDER

TEMPLATE_NAME = "argomlops-train"
"""The WorkflowTemplate every run references (installed by the Helm chart)."""

SERVICE_ACCOUNT = "argomlops-trainer"
"""Service account of the trainer pods; the chart annotates it for GKE Workload Identity."""

GPU_QUEUE_CONFIG_MAP = "argomlops-gpu-queue"
"""ConfigMap (installed by the chart) holding one semaphore size per accelerator, e.g. `nvidia-tesla-t4: "1"`."""

CPU_QUEUE_KEY = "cpu"
"""The key of that ConfigMap CPU-only runs (placement.gpus 0) queue on: they never take a GPU's slot."""

REPORT_PARAMETER = "report"
"""The output parameter of every training pod, the file it is read from and the variable that tells the
trainer where to write it: the trainer's report of its newest checkpoint and bucket usage
(trainer/gcs_usage.py), which Argo copies into the Workflow status."""

CONFIG_MOUNT = "/etc/argomlops"
CONFIG_KEY = "run.yaml"
CONFIG_PATH = f"{CONFIG_MOUNT}/{CONFIG_KEY}"
"""Where the per-run ConfigMap's run.yaml appears in the trainer container."""

SOURCE_PATH = "/src"
"""Where an optional git source is checked out."""

NEWEST_IMAGES_KEY = "newest.png"
"""That artifact's name in the run's stage folder: `<run>/<stage>/newest.png`."""
LOGS_FOLDER = "logs"
"""Argo archives each pod's log to `<run>/logs/<pod name>/main.log`."""
STOPPED_BY_ANNOTATION = "argomlops.dev/stopped-by"
"""Set on a Workflow the operator stopped, with why: a cap (MaxCost, NamespaceMonthlyCap) or `STOPPED_BY_PRUNER`."""
STOPPED_BY_PRUNER = "Pruned"
"""The stopped-by value of a trial's Workflow stopped by its sweep's pruner: the run ends Pruned, never resumed."""

LABEL_MLOPS = "argomlops.dev/mlops"
LABEL_RUN_ID = "argomlops.dev/run-id"
LABEL_STAGE = "argomlops.dev/stage"

# Parameter names of the WorkflowTemplate (spec.arguments.parameters); the per-run Workflow sets each.
P_RUN_ID = "run-id"
P_CONFIG_MAP = "config-map"
P_ARTIFACTS = "artifacts"
P_ARTIFACTS_BUCKET = "artifacts-bucket"
P_RUN_KEY = "run-key"
P_IMAGE = "image"
P_STAGES = "stages"
P_QUEUE = "queue"
P_MAX_PREEMPTIONS = "max-preemptions"
P_GIT_REPO = "git-repo"
P_GIT_REVISION = "git-revision"
P_GIT_SECRET = "git-secret"
P_COMMAND = "command"
P_RUN_STAGE: dict[str, str] = {stage: f"run-{stage}" for stage in STAGE_ORDER}
"""One "true"/"false" parameter per stage (`run-vqvae`, `run-pixelcnn`): whether the run takes it."""


def run_labels(name: str, run_id: str) -> dict[str, str]:
    """The labels of everything a run creates: its MLOps object's name and its run id."""
    return {LABEL_MLOPS: name, LABEL_RUN_ID: run_id}


# Argo refuses Workflow names over 63 characters: it copies the name into pod label values.
MAX_NAME_LENGTH = 63
_NOT_ALLOWED = re.compile(r"[^a-z0-9-]+")


def k8s_name(name: str, run_id: str) -> str:
    """The object name of a run's Workflow and ConfigMap: `<name>-<run-id>` as a DNS-1123 label.

    The mapping is lower-case, every run of characters outside `[a-z0-9-]` (the run id's `_`, dots in the
    MLOps name) becomes one `-`, and leading/trailing dashes are dropped: `fafa` + `2026-11-27_09h01m09s`
    gives `fafa-2026-11-27-09h01m09s`. When the result would pass 63 characters the MLOps name is
    shortened and a 6-hex-digit hash of the full name is added, so two long names stay distinct and the
    run id (the part that differs between runs) is always kept whole.

    Raises:
        ValueError: when `name` or `run_id` has no usable character.
    """
    base = _NOT_ALLOWED.sub("-", name.lower()).strip("-")
    run = _NOT_ALLOWED.sub("-", run_id.lower()).strip("-")
    if not base or not run:
        raise ValueError(f"cannot make a Kubernetes name from name={name!r} and run id={run_id!r}")
    full = f"{base}-{run}"
    if len(full) <= MAX_NAME_LENGTH:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    room = MAX_NAME_LENGTH - len(run) - len(digest) - 2
    if room < 1:
        raise ValueError(f"run id {run_id!r} is too long for a Kubernetes name")
    return f"{base[:room].rstrip('-')}-{digest}-{run}"


def workflow_name(name: str, run_id: str, resumes: int = 0) -> str:
    """The name of a run's Workflow: `k8s_name(name, run_id)`, then `-r2`, `-r3`, ... for each budget resume.

    A run stopped by its budget and resumed gets a new Workflow (a stopped one cannot be started again);
    the suffix goes with the run id, so `k8s_name` keeps it whole and shortens only the MLOps name.
    """
    return k8s_name(name, run_id if resumes == 0 else f"{run_id}-r{resumes + 1}")
