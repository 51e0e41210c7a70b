"""No secret leaves its Secret: a private repository by reference, credentials in a URL refused.

The real kopf operator against the test API server (tests/kube/). A private repository names a
kubernetes.io/basic-auth Secret (`git.secret`); the Workflow passes only that name, and Argo's git
artifact reads the keys when it clones. A `git.repo` URL carrying `user:token@` is refused with one
line saying to use a Secret. In both cases the token appears nowhere the operator writes: not in the
status, the Workflow, the ConfigMap, an Event or a log line. (The refused object itself holds what was
written into it, and kopf's copy of its spec in an annotation of that same object; a real API server
refuses such an object at admission with the CRD's rule, tests/test_crd.py, so it is never stored.)

And the trainer image: an object without `spec.image` runs the operator's default; an operator without
one marks such an object Invalid with one line instead of making pods that wait for an image forever.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
from kube.fixtures import TRAINER_IMAGE, RunningKube, eventually

from argomlops.config.cluster import CREDENTIALS_MESSAGE
from argomlops.operator.handlers import NO_IMAGE

GROUP, VERSION, PLURAL, NS = "argomlops.dev", "v1alpha1", "mlops", "default"
TOKEN = "ghp_s3cr3tT0kenThatMustNeverLeak42"


def _create(kube: RunningKube, name: str, spec: dict[str, Any]) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube.api())
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, {"metadata": {"name": name}, "spec": spec})


def _status(kube: RunningKube, name: str) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        (obj,) = [o for o in kube.objects(PLURAL, NS) if o["metadata"]["name"] == name]
        status: dict[str, Any] = obj.get("status") or {}
        return status if status.get("observedGeneration") == obj["metadata"]["generation"] else None

    return eventually(settled)


def _everything_but(kube: RunningKube, secret_holders: set[str]) -> str:
    """Every stored object as JSON, but the Secret and the MLOps objects named (which hold what was written)."""
    found = []
    for plural in ("configmaps", "workflows", "events", PLURAL, "secrets"):
        for obj in kube.objects(plural):
            if plural == "secrets" or (plural == PLURAL and obj["metadata"]["name"] in secret_holders):
                if plural == PLURAL:
                    found.append(json.dumps(obj.get("status") or {}))  # its status is the operator's
                continue
            found.append(json.dumps(obj))
    return "\n".join(found)


def test_a_private_repository_is_cloned_with_a_secret_the_operator_never_reads(
    kube: RunningKube, operator_runner: Any
) -> None:
    secret = {"metadata": {"name": "git-token", "namespace": NS}, "type": "kubernetes.io/basic-auth"}
    secret["stringData"] = {"username": "oauth2", "password": TOKEN}
    kube.call(kube.server.put_object, "v1", "secrets", secret)
    git = {"repo": "https://github.com/example/private.git", "secret": "git-token", "command": ["python", "t.py"]}
    with operator_runner() as runner:
        _create(kube, "private", {"artifacts": "gs://bucket/runs", "git": git})
        status = _status(kube, "private")
        (workflow,) = eventually(lambda: kube.objects("workflows", NS))
        eventually(lambda: kube.objects("events", NS))
    assert status["phase"] == "Pending" and not status.get("errors")
    arguments = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert arguments["git-secret"] == "git-token" and arguments["git-repo"] == git["repo"]
    assert arguments["image"] == TRAINER_IMAGE  # no spec.image: the operator's default
    assert TOKEN not in _everything_but(kube, set()) and TOKEN not in runner.output


def test_credentials_in_the_repository_url_are_refused_and_never_repeated(
    kube: RunningKube, operator_runner: Any
) -> None:
    git = {"repo": f"https://oauth2:{TOKEN}@github.com/example/private.git", "command": ["python", "t.py"]}
    with operator_runner() as runner:
        _create(kube, "leaky", {"artifacts": "gs://bucket/runs", "git": git})
        status = _status(kube, "leaky")
        eventually(lambda: [e for e in kube.objects("events", NS) if e["reason"] == "Invalid"])
    assert status["phase"] == "Invalid"
    assert status["errors"] == [f"git.repo: repo {CREDENTIALS_MESSAGE}"]
    assert "Secret" in status["errors"][0] and "git.secret" in status["errors"][0]
    assert not kube.objects("workflows", NS) and not [c for c in kube.objects("configmaps", NS)]
    assert "is invalid" in runner.output  # the log was captured, and it holds the line, not the token
    assert TOKEN not in _everything_but(kube, {"leaky"}) and TOKEN not in runner.output


def test_without_a_default_trainer_image_an_object_needs_its_own(kube: RunningKube, operator_runner: Any) -> None:
    with operator_runner(env={"ARGOMLOPS_TRAINER_IMAGE": ""}):
        _create(kube, "no-image", {"artifacts": "gs://bucket/runs"})
        _create(kube, "own-image", {"artifacts": "gs://bucket/runs", "image": "registry.example/mine:3"})
        no_image, own_image = _status(kube, "no-image"), _status(kube, "own-image")
        (workflow,) = eventually(lambda: kube.objects("workflows", NS))
    assert no_image["phase"] == "Invalid" and no_image["errors"] == [NO_IMAGE]
    assert own_image["phase"] == "Pending" and workflow["metadata"]["labels"]["argomlops.dev/mlops"] == "own-image"
    assert {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}[
        "image"
    ] == "registry.example/mine:3"
