"""The official Kubernetes client, configured in-cluster or from $KUBECONFIG at call time.

The client's own default reads $KUBECONFIG once, when `kubernetes` is imported; reading it here when the
operator starts lets tests and `argomlops operator --kubeconfig`-style setups point it anywhere.

kopf retries its own requests on 5xx and 429; the handlers' client is given the same patience
(`RETRIES`): a busy API server (API Priority and Fairness answers 429 with Retry-After) or one
restarting (500, 503, reset connections) costs a handler a few seconds instead of kopf's backoff of a
minute. Every verb is retried, creates and guarded patches included: a retried create of an object the
lost answer had made gets AlreadyExists ("made before", objects.create), a retried guarded patch a 409
(read again), so a retry never doubles anything.
"""

from __future__ import annotations

import os

import kubernetes
import urllib3

GROUP = "argomlops.dev"
VERSION = "v1alpha1"
PLURAL = "mlops"
KIND = "MLOps"
SWEEP_PLURAL = "mlopssweeps"
SWEEP_KIND = "MLOpsSweep"
WORKFLOW_GROUP = "argoproj.io"
WORKFLOW_VERSION = "v1alpha1"
WORKFLOW_PLURAL = "workflows"


RETRIES = urllib3.Retry(
    total=6,
    backoff_factor=0.25,
    backoff_max=8,
    status_forcelist=(429, 500, 502, 503, 504),
    allowed_methods=None,
    respect_retry_after_header=True,
    # The last answer is returned, not raised: the client turns it into its ApiException as usual.
    raise_on_status=False,
)
"""Up to 6 retries over about 10 s of the handlers' requests: connection errors, 429 (after its
Retry-After) and 5xx; other answers are the handlers' to judge (404, 409, 422)."""


def api_client() -> kubernetes.client.ApiClient:
    """An ApiClient for the cluster the operator runs in, else for $KUBECONFIG's current context."""
    configuration = kubernetes.client.Configuration()
    configuration.retries = RETRIES
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
