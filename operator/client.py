"""The official Kubernetes client, configured in-cluster or from $KUBECONFIG at call time.

The client's own default reads $KUBECONFIG once, when `kubernetes` is imported; reading it here when the
operator starts lets tests and `argomlops operator --kubeconfig`-style setups point it anywhere.
"""

from __future__ import annotations

import os

import kubernetes

GROUP = "argomlops.dev"
VERSION = "v1alpha1"
PLURAL = "mlops"
KIND = "MLOps"
SWEEP_PLURAL = "mlopssweeps"
SWEEP_KIND = "MLOpsSweep"
WORKFLOW_GROUP = "argoproj.io"
WORKFLOW_VERSION = "v1alpha1"
WORKFLOW_PLURAL = "workflows"


def api_client() -> kubernetes.client.ApiClient:
    """An ApiClient for the cluster the operator runs in, else for $KUBECONFIG's current context."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        path = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or None
        kubernetes.config.load_kube_config(config_file=path, client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


def context_namespace() -> str:
    """The namespace a person's commands default to: the pod's own in a cluster, else the kubeconfig context's."""
    mounted = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.path.exists(mounted):
        with open(mounted) as handle:
            return handle.read().strip() or "default"
    path = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or None
    try:
        _contexts, current = kubernetes.config.list_kube_config_contexts(config_file=path)
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    return str((current or {}).get("context", {}).get("namespace") or "default")
