"""The chart's optional TensorBoard: off by default, reading the bucket as the trainer, non-root and bounded."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
from chart_render import (
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    find,
    only,
    render,
)

from argomlops.workflows import names

# 5. The optional TensorBoard.

TENSORBOARD = {
    "tensorboard": {"enabled": True, "logdir": "gs://my-project-argomlops/artifacts"},
    "trainer": {"serviceAccount": {"gcpServiceAccount": "trainer@my-project.iam.gserviceaccount.com"}},
}


def test_tensorboard_is_off_by_default(defaults: list[dict[str, Any]], chart: helm.Chart) -> None:
    assert not [o for o in defaults if "tensorboard" in o["metadata"]["name"]]
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)
    assert "port-forward svc/argomlops-tensorboard" not in next(v for k, v in notes.items() if k.endswith("NOTES.txt"))


def test_tensorboard_reads_the_bucket_as_the_trainer_non_root_and_bounded(
    chart: helm.Chart, argo_validator: jsonschema.Draft202012Validator
) -> None:
    values = {**TENSORBOARD, "namespaces": ["team-a", "team-b"]}
    objects = render(chart, values)
    for obj in objects:  # strictly valid, like every other object of the chart
        if obj["apiVersion"].startswith("argoproj.io/"):
            assert not list(argo_validator.iter_errors(obj))
        else:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    deployment = only(objects, "Deployment", "argomlops-tensorboard")
    service = only(objects, "Service", "argomlops-tensorboard")
    # In the first namespace of runs, as the trainer's ServiceAccount (its Workload Identity reads gs://).
    assert deployment["metadata"]["namespace"] == service["metadata"]["namespace"] == "team-a"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == names.SERVICE_ACCOUNT
    trainer = [
        o for o in find(objects, "ServiceAccount", names.SERVICE_ACCOUNT) if o["metadata"]["namespace"] == "team-a"
    ]
    assert trainer[0]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith("trainer@")
    (container,) = pod["containers"]
    assert container["command"] == ["tensorboard"] and container["image"] == "ghcr.io/argomlops/argomlops-trainer:0.1.0"
    assert "--logdir=gs://my-project-argomlops/artifacts" in container["args"]
    assert "--load_fast=false" in container["args"] and "--bind_all" in container["args"]
    # Non-root, read-only, bounded.
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"] == "2Gi" and container["resources"]["requests"]["cpu"]
    # The Service reaches exactly these pods, on the port TensorBoard listens on.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["targetPort"] == "http"
    assert container["ports"][0] == {"name": "http", "containerPort": 6006, "protocol": "TCP"}
    # The operator's Service selector must not catch TensorBoard's pods (and the other way round).
    operator_labels = only(objects, "Deployment", "argomlops-operator")["spec"]["selector"]["matchLabels"]
    assert not operator_labels.items() <= labels.items()
    notes = next(
        v for k, v in chart.render(values, name=RELEASE, namespace=NAMESPACE).items() if k.endswith("NOTES.txt")
    )
    assert "kubectl -n team-a port-forward svc/argomlops-tensorboard 6006:6006" in notes
    assert "http://localhost:6006" in notes


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tensorboard": {"enabled": True}}, "tensorboard.logdir is required"),
        ({"tensorboard": {"enabled": True, "logdir": "s3://bucket"}}, "logdir"),
        ({"tensorboard": {"enabled": True, "logdir": "gs://bkt/p", "namespace": "elsewhere"}}, "tensorboard.namespace"),
        ({"tensorboard": {"enabled": True, "logdir": "gs://bkt/p", "prot": 1}}, "prot"),
    ],
)
def test_tensorboard_refuses_bad_values(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=re.escape(message)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
