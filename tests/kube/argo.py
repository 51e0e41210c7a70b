"""Workflow status as the Argo controller writes it (the controller cannot run here).

Tests patch these into Workflow objects on the test API server to drive the operator's status mirror;
the shapes follow Argo v3/v4 `status.nodes` (Pod and Retry nodes of a DAG task) and the workflow-level
fields listed in argomlops/operator/status.py.
"""

from __future__ import annotations

from typing import Any

LOCK_MESSAGE = "Waiting for {namespace}/ConfigMap/argomlops-gpu-queue/nvidia-tesla-t4 lock. Lock status: 0/1"
PREEMPTED_MESSAGE = "Pod was terminated in response to imminent node shutdown."


def pod_node(
    node_id: str,
    display_name: str,
    phase: str,
    *,
    started: str | None = None,
    finished: str | None = None,
    progress: str | None = None,
    exit_code: int | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """A Pod node of the `train` template, e.g. `vqvae(1)`."""
    node: dict[str, Any] = {
        "id": node_id,
        "name": f"wf.{display_name}",
        "displayName": display_name,
        "type": "Pod",
        "templateName": "train",
        "phase": phase,
    }
    optional = {"startedAt": started, "finishedAt": finished, "progress": progress, "message": message}
    node.update({key: value for key, value in optional.items() if value is not None})
    if exit_code is not None:
        node["outputs"] = {"exitCode": str(exit_code)}
    return node


def retry_node(node_id: str, display_name: str, phase: str, children: list[str]) -> dict[str, Any]:
    """The Retry node Argo puts above the attempts of a task with a retryStrategy."""
    return {
        "id": node_id,
        "name": f"wf.{display_name}",
        "displayName": display_name,
        "type": "Retry",
        "templateName": "train",
        "phase": phase,
        "children": children,
    }


def workflow_status(phase: str, nodes: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """A Workflow `status`: phase, nodes by id, plus startedAt/finishedAt/progress/message as given."""
    status: dict[str, Any] = {"phase": phase, "nodes": {node["id"]: node for node in nodes or []}}
    status.update({key: value for key, value in fields.items() if value is not None})
    return status
