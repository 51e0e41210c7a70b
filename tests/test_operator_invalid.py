"""Malformed MLOps manifests: each gets its own clear Invalid status and Warning event; the operator stays up.

The real kopf operator runs against the test API server (tests/kube/). A real API server would reject
some of these with the CRD's schema before the operator sees them; the test server has no schema
validation, which makes it a test of the operator's own last line of defence.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes
from kube.fixtures import RunningKube, eventually, replace_mlops_spec

GROUP, VERSION, PLURAL, NS = "argomlops.dev", "v1alpha1", "mlops", "default"
VALID: dict[str, Any] = {"artifacts": "gs://bucket/artifacts"}

# (name, change to a valid spec as {dotted.path: value}, the field the first error line must name)
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("artifacts-s3", {"artifacts": "s3://bucket/x"}, "artifacts"),
    ("artifacts-empty", {"artifacts": " "}, "artifacts"),
    ("stages-empty", {"stages": []}, "stages"),
    ("stages-order", {"stages": ["pixelcnn", "vqvae"]}, "stages"),
    ("stages-repeat", {"stages": ["vqvae", "vqvae"]}, "stages"),
    ("stages-unknown", {"stages": ["gan"]}, "stages[0]"),
    ("resume-http", {"resumeFrom": "http://example.com/run"}, "resumeFrom"),
    ("source-builtin", {"data.source": "builtin:mnist"}, "data.source"),
    ("image-size-small", {"data.imageSize": 4}, "data.imageSize"),
    ("image-size-text", {"data.imageSize": "big"}, "data.imageSize"),
    ("image-size-grid", {"data.imageSize": 66}, "data.imageSize"),
    ("validation-fraction", {"data.validationFraction": 1.5}, "data.validationFraction"),
    ("tags-no-metadata", {"data.source": "gs://bucket/photos", "data.includeTags": ["standing"]}, "data.metadata"),
    (
        "tags-overlap",
        {"data.metadata": "m.jsonl", "data.includeTags": ["a"], "data.excludeTags": ["a"]},
        "data.includeTags",
    ),
    ("data-unknown-field", {"data.imgSize": 64}, "data.imgSize"),
    ("encoder-empty", {"models.vqvae.encoderChannels": []}, "models.vqvae.encoderChannels"),
    ("codebook-one", {"models.vqvae.numEmbeddings": 1}, "models.vqvae.numEmbeddings"),
    ("quantizer", {"models.vqvae.quantizer": "kmeans"}, "models.vqvae.quantizer"),
    ("decay-one", {"models.vqvae.decay": 1.0}, "models.vqvae.decay"),
    ("latent-multiple", {"models.vqvae.latentChannels": 33}, "models.vqvae.latentChannels"),
    ("kernel-even", {"models.pixelcnn.kernelSize": 4}, "models.pixelcnn.kernelSize"),
    ("layers-zero", {"models.pixelcnn.layers": 0}, "models.pixelcnn.layers"),
    ("epochs-zero", {"training.vqvae.epochs": 0}, "training.vqvae.epochs"),
    ("batch-negative", {"training.vqvae.batchSize": -1}, "training.vqvae.batchSize"),
    ("temperature-zero", {"training.pixelcnn.temperature": 0}, "training.pixelcnn.temperature"),
    ("learning-rate-text", {"training.vqvae.learningRate": "fast"}, "training.vqvae.learningRate"),
    ("gpus-nine", {"placement.gpus": 9}, "placement.gpus"),
    ("accelerator-spaces", {"placement.accelerator": "NVIDIA T4"}, "placement.accelerator"),
    ("git-ssh", {"git": {"repo": "git@github.com:x/y.git", "command": ["python"]}}, "git.repo"),
    ("budget-negative", {"budget.maxCost": -5}, "budget.maxCost"),
    ("budget-zero", {"budget.maxCost": 0}, "budget.maxCost"),
    ("budget-nan", {"budget.maxCost": float("nan")}, "budget.maxCost"),
    ("budget-text", {"budget.maxCost": "lots"}, "budget.maxCost"),
    ("budget-unknown", {"budget.limit": 20}, "budget.limit"),
    ("top-level-unknown", {"epochs": 10}, "epochs"),
    ("spec-not-mapping", {"": "train please"}, "spec"),
]


def spec_with(changes: dict[str, Any]) -> Any:
    """A valid spec with dotted-path changes; the path "" replaces the whole spec."""
    if "" in changes:
        return changes[""]
    spec = copy.deepcopy(VALID)
    for path, value in changes.items():
        node = spec
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return spec


def test_malformed_manifests_each_get_their_own_status(kube: RunningKube, operator_runner: Any) -> None:
    assert len(MALFORMED) >= 30
    custom = kubernetes.client.CustomObjectsApi(kube.api())
    with operator_runner() as runner:
        for name, changes, _ in MALFORMED:
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MLOps", "metadata": {"name": name}}
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, {**body, "spec": spec_with(changes)})

        def statuses() -> dict[str, dict[str, Any]]:
            found = {o["metadata"]["name"]: o.get("status") or {} for o in kube.objects("mlops", NS)}
            return found if all(s.get("phase") == "Invalid" for s in found.values()) else {}

        found = eventually(statuses, timeout=30)
        messages = set()
        for name, _, field in MALFORMED:
            status = found[name]
            assert status["errors"][0].startswith(f"{field}: "), (name, status["errors"])
            assert status["message"].startswith("spec is invalid") and status["errors"][0] in status["message"]
            assert status["observedGeneration"] == 1 and "runId" not in status
            messages.add(status["errors"][0])
        assert len(messages) == len(MALFORMED)  # each its own line, not one generic complaint

        warned = eventually(
            lambda: (
                (w := {e["involvedObject"]["name"] for e in kube.objects("events", NS) if e["type"] == "Warning"})
                >= {n for n, _, _ in MALFORMED}
                and w
            )
        )
        assert len(warned) == len(MALFORMED)
        assert not kube.objects("configmaps", NS) and not kube.objects("workflows", NS)

        # Still up: fixing one of them starts its run, and clears the errors.
        replace_mlops_spec(custom, NS, "gpus-nine", VALID)
        fixed = eventually(
            lambda: (
                (s := custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "gpus-nine")["status"]).get(
                    "observedGeneration"
                )
                == 2
                and s
            )
        )
        assert fixed["phase"] == "Pending" and fixed["runId"] and "errors" not in fixed
        eventually(lambda: len(kube.objects("workflows", NS)) == 1)
    assert runner.exception is None


def test_several_errors_give_one_line_each(kube: RunningKube, operator_runner: Any) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube.api())
    spec = spec_with({"placement.gpus": -1, "training.vqvae.epochs": 0, "data.validationFraction": 1.5})
    with operator_runner():
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, {"kind": "MLOps", "metadata": {"name": "three"}, "spec": spec}
        )
        status = eventually(
            lambda: (
                (s := custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "three").get("status"))
                and s.get("phase") == "Invalid"
                and s
            )
        )
    fields = sorted(line.split(":")[0] for line in status["errors"])
    assert fields == ["data.validationFraction", "placement.gpus", "training.vqvae.epochs"]
    assert status["message"].startswith("spec is invalid (3 problems)")
