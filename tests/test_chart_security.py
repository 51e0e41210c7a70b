"""What the chart and the WorkflowTemplate let their pods do: the restricted Pod Security Standard, the
operator's NetworkPolicy, and the trainer image every MLOps object without `spec.image` gets.

Every pod spec the chart renders (with each optional part switched on) and every leaf of the
argomlops-train template (as Argo builds its pod: the template's pod security context, the leaf's
container and volumes, the per-run Workflow's podSpecPatch) is checked against tests/pod_security.py.
Argo's own init and wait containers come from the Argo installation, not from here.
"""

from __future__ import annotations

import copy
import json
from pathlib import PurePosixPath
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from chart_render import render
from pod_security import read_only_violations, restricted_violations

from argomlops import pod as pod_paths
from argomlops.config import MLOpsSpec
from argomlops.workflows.generate import template_dict
from argomlops.workflows.run import build_run_workflow

EVERYTHING_ON = {
    "tensorboard": {"enabled": True, "logdir": "gs://antfield/FAFA/artifacts"},
    "operator": {"networkPolicy": {"enabled": True}},
}


def chart_pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod template of every workload the chart renders, by `Kind/name`."""
    workloads = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")
    pods = {
        f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"] for o in objects if o["kind"] in workloads
    }
    pods.update(
        {
            f"CronJob/{o['metadata']['name']}": o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for o in objects
            if o["kind"] == "CronJob"
        }
    )
    return pods


def template_pods(template: dict[str, Any], patch: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The main part of each leaf's pod as Argo makes it, with a per-run Workflow's podSpecPatch merged in."""
    pods = {}
    for leaf in template["spec"]["templates"]:
        if "container" not in leaf:
            continue
        container = copy.deepcopy(leaf["container"])
        container.setdefault("name", "main")  # Argo names the template's container "main"
        pod: dict[str, Any] = {
            "securityContext": copy.deepcopy(template["spec"]["securityContext"]),
            "containers": [container],
            "volumes": copy.deepcopy(leaf.get("volumes", [])),
        }
        for key, value in (patch or {}).items():
            if key == "containers":  # merged by container name, as a strategic merge patch does
                for change in value:
                    target = next(c for c in pod["containers"] if c["name"] == change["name"])
                    target.update({k: v for k, v in change.items() if k != "name"})
            else:
                pod[key] = value
        pods[leaf["name"]] = pod
    return pods


def writes_of(container: dict[str, Any]) -> list[str]:
    """The folders a training container's program writes besides its run folder, from its environment."""
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    written = [env["TMPDIR"], f"{env['HOME']}/.cache", env["ARGOMLOPS_CACHE"]]
    written += [
        str(PurePosixPath(env[key]).parent) for key in (pod_paths.REPORT_ENV, pod_paths.NEWEST_IMAGES_ENV) if key in env
    ]
    return written


# --- the restricted Pod Security Standard --------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_every_chart_pod_is_restricted_and_read_only(chart: helm.Chart, values: dict[str, Any]) -> None:
    pods = chart_pods(render(chart, values))
    assert len(pods) == (2 if values else 1)
    for name, pod in pods.items():
        assert restricted_violations(pod) == [], name
        # The operator's Python and the kubernetes client, and TensorBoard (HOME=/tmp), write under /tmp only.
        written = {container["name"]: ["/tmp"] for container in pod["containers"]}
        assert read_only_violations(pod, written) == [], name


def test_every_template_pod_is_restricted_and_writes_only_to_emptydirs() -> None:
    template = template_dict()
    spec = MLOpsSpec.model_validate({"artifacts": "gs://antfield/runs", "placement": {"gpus": 2}})
    workflow = build_run_workflow(
        name="fafa", namespace="ml", run_id="2026-12-01_10h00m00s", config_map="cm", spec=spec
    )
    assert "securityContext" not in workflow["spec"]  # the per-run Workflow never loosens the template's
    patch = json.loads(workflow["spec"]["podSpecPatch"])
    pods = template_pods(template, patch)
    assert set(pods) == {"train", "git-command", "git-command-private"}
    for name, pod in pods.items():
        assert restricted_violations(pod) == [], name
        (container,) = pod["containers"]
        assert read_only_violations(pod, {container["name"]: writes_of(container)}) == [], name


def test_the_check_has_teeth() -> None:
    """Each rule catches what it is about."""
    good = template_pods(template_dict())["train"]
    assert restricted_violations(good) == []
    breaks = {
        "hostNetwork": lambda p: p.update(hostNetwork=True),
        "privileged": lambda p: p["containers"][0]["securityContext"].update(privileged=True),
        "hostPath": lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "runAsNonRoot": lambda p: (
            p["securityContext"].pop("runAsNonRoot"),
            p["containers"][0]["securityContext"].pop("runAsNonRoot"),
        ),
        "runAsUser 0": lambda p: p["containers"][0]["securityContext"].update(runAsUser=0),
        "allowPrivilegeEscalation": lambda p: p["containers"][0]["securityContext"].update(
            allowPrivilegeEscalation=True
        ),
        "seccompProfile": lambda p: (
            p["securityContext"].pop("seccompProfile"),
            p["containers"][0]["securityContext"].pop("seccompProfile"),
        ),
        "drop ALL": lambda p: p["containers"][0]["securityContext"].update(capabilities={}),
        "SYS_ADMIN": lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "hostPort": lambda p: p["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
        "sysctl": lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    }
    for rule, breaking in breaks.items():
        pod = copy.deepcopy(good)
        breaking(pod)
        found = restricted_violations(pod)
        assert found and any(rule.split()[0] in line for line in found), (rule, found)
    unwritable = copy.deepcopy(good)
    container = unwritable["containers"][0]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    assert read_only_violations(unwritable, {container["name"]: ["/var/lib/x"]}) == [
        "containers[main]: readOnlyRootFilesystem must be true",
        "containers[main]: writes /var/lib/x, which is on no emptyDir",
    ]


# --- the operator's NetworkPolicy ----------------------------------------------------------------------


def _policy(chart: helm.Chart, network_policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in render(chart, {"operator": {"networkPolicy": network_policy}}) if o["kind"] == "NetworkPolicy"]


def test_network_policy_is_optional_and_off_by_default(chart: helm.Chart) -> None:
    assert _policy(chart, {}) == []


def test_network_policy_lets_the_operator_reach_the_api_server_and_dns_only(chart: helm.Chart) -> None:
    objects = render(chart, {"operator": {"networkPolicy": {"enabled": True}, "healthPort": 9090}})
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    kubernetes_validate.validate(policy, "1.33", strict=True)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items() and selector["app.kubernetes.io/component"] == "operator"
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 9090, "protocol": "TCP"}]}]  # the probes, nothing else
    api, dns = policy["spec"]["egress"]
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def test_network_policy_narrows_to_the_addresses_given(chart: helm.Chart) -> None:
    given = {
        "enabled": True,
        "apiServer": {"cidrs": ["172.16.0.2/32"], "ports": [443]},
        "dns": {"cidrs": ["10.0.0.10/32"]},
    }
    (policy,) = _policy(chart, given)
    api, dns = policy["spec"]["egress"]
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "172.16.0.2/32"}}]}
    assert dns["to"] == [{"ipBlock": {"cidr": "10.0.0.10/32"}}]
    with pytest.raises(Exception, match="cidrs"):
        _policy(chart, {"enabled": True, "apiServer": {"cidrs": ["the api server"]}})


# --- the trainer image: set once, at helm install -----------------------------------------------------


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({}, "ghcr.io/argomlops/argomlops-trainer:0.1.0"),
        (
            {"repository": "europe-docker.pkg.dev/p/r/argomlops-trainer", "tag": "0.2.0"},
            "europe-docker.pkg.dev/p/r/argomlops-trainer:0.2.0",
        ),
        ({"tag": "@sha256:" + "ab" * 32}, "ghcr.io/argomlops/argomlops-trainer@sha256:" + "ab" * 32),
    ],
)
def test_trainer_image_reaches_the_operator_and_the_template(
    chart: helm.Chart, image: dict[str, str], expected: str
) -> None:
    objects = render(chart, {"trainer": {"image": image}, "namespaces": ["team-a", "team-b"]})
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ARGOMLOPS_TRAINER_IMAGE"] == expected
    templates = [o for o in objects if o["kind"] == "WorkflowTemplate"]
    assert len(templates) == 2
    for template in templates:
        (parameter,) = [p for p in template["spec"]["arguments"]["parameters"] if p["name"] == "image"]
        assert parameter["value"] == expected
