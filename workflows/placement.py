"""Where a run's pods go, as plain values in its Workflow: node selectors, GPUs, the grace period.

The operator writes these from the validated `spec.placement` into each per-run Workflow, where Argo
applies them to every pod of the run (`spec.nodeSelector`, `spec.podSpecPatch`). Nothing is computed by
Argo: what a test asserts is exactly what the pods get.

- `cloud.google.com/gke-spot: "true"` only when `spot` (on-demand nodes carry no such label, so a
  `"false"` value could never match);
- `cloud.google.com/gke-accelerator: <accelerator>` unless the run is CPU only (`gpus: 0`);
- `nvidia.com/gpu` requests and limits of the main container, in `podSpecPatch` because Argo has no
  template field for extended resources that a Workflow could set; none at 0 GPUs;
- `terminationGracePeriodSeconds` (`TERMINATION_GRACE_SECONDS`).
"""

from __future__ import annotations

import json
from typing import Any

from argomlops.config import Placement

SPOT_LABEL = "cloud.google.com/gke-spot"
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GPU_RESOURCE = "nvidia.com/gpu"
MAIN_CONTAINER = "main"
"""Argo's name for the container that runs a template's command."""

TERMINATION_GRACE_SECONDS = 60
"""Time between SIGTERM and SIGKILL for an ordinary deletion (drain, `argo stop`): enough to write a
checkpoint. A GKE spot preemption does not honour it: graceful node shutdown gives non-system pods
about 15 s of the VM's 30 s notice, so the trainer must checkpoint within that."""


def node_selector(placement: Placement) -> dict[str, str]:
    """The node labels a run's pods require."""
    selector: dict[str, str] = {}
    if placement.spot:
        selector[SPOT_LABEL] = "true"
    if placement.gpus > 0:
        selector[ACCELERATOR_LABEL] = placement.accelerator
    return selector


def pod_spec_patch(placement: Placement) -> dict[str, Any]:
    """The patch applied to every pod of the run: grace period and, with GPUs, the main container's GPUs."""
    patch: dict[str, Any] = {"terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS}
    if placement.gpus > 0:
        gpus = {GPU_RESOURCE: str(placement.gpus)}
        patch["containers"] = [{"name": MAIN_CONTAINER, "resources": {"requests": gpus, "limits": dict(gpus)}}]
    return patch


def placement_json(placement: Placement) -> str:
    """The placement as the compact JSON the Workflow's annotation carries (the cost estimate reads it)."""
    return json.dumps(placement.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
