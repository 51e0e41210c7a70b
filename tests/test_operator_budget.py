"""Budgets as the operator enforces them: warn at 80 %, stop at 100 % the Argo way, OverBudget, resume.

The real kopf operator runs against the test API server (tests/kube/); Workflow status is written as the
Argo controller writes it (tests/kube/argo.py), including what Argo does to a Workflow whose
`spec.shutdown` is `Stop` (argo-workflows v4 `workflow/controller/exec_control.go` and
`operator.go`): the running pod's node is marked Failed with "workflow shutdown with strategy:  Stop"
while its container gets SIGTERM, nothing is retried, and once the pod's outputs are in (exit code 143
and the trainer's report) the Workflow ends Failed with "Stopped with strategy 'Stop'".

Time is real and prices are steep: one GPU-second costs 1 USD, the node nothing, so a pod that started
N seconds ago has cost N (plus its bucket operations once it reports them).
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
import pytest
from executables import executable
from kube.argo import LOCK_MESSAGE, pod_node, retry_node, workflow_status
from kube.fixtures import RunningKube, eventually
from test_operator_runs import NS, Cluster, manifest, settled

from argomlops.workflows.names import LABEL_RUN_ID, workflow_name

PRICES = {
    "ARGOMLOPS_PRICE_PER_GPU_HOUR": "3600",  # 1 USD per GPU-second
    "ARGOMLOPS_PRICE_PER_VCPU_HOUR": "0",
    "ARGOMLOPS_PRICE_PER_GIB_HOUR": "0",
    "ARGOMLOPS_CHARGE_INTERVAL": "1",
}
REPORT = {"stage": "vqvae", "checkpoint": "vqvae/checkpoints/step-00000040", "step": 40}
OPS = {"classA": 2000, "classB": 5000}  # 2000 x 0.005 / 1000 + 5000 x 0.0004 / 1000 = 0.012 USD
OPS_COST = 0.012


def at(seconds_ago: float) -> str:
    """An RFC 3339 time `seconds_ago` seconds before now (Argo writes whole seconds)."""
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_between(start: str, end: str) -> float:
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def budgeted(name: str, max_cost: float | None) -> dict[str, Any]:
    obj = manifest(name=name)
    if max_cost is not None:
        obj["spec"]["budget"] = {"maxCost": max_cost}
    return obj


class Argo:
    """Writes one Workflow's status as the controller would, retrying when the operator wrote in between."""

    def __init__(self, cluster: Cluster, workflow: str) -> None:
        self.cluster = cluster
        self.workflow = workflow
        self.started = at(0)

    def get(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.cluster.custom.get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", NS, "workflows", self.workflow
        )
        return obj

    def write(self, status: dict[str, Any]) -> None:
        for _ in range(20):
            try:
                self.cluster.set_workflow_status(self.workflow, status)
                return
            except kubernetes.client.ApiException as exc:
                if exc.status != 409:
                    raise
        raise AssertionError(f"Workflow {self.workflow} kept changing")

    def running(self, started: str, progress: int = 1) -> None:
        """One pod of the vqvae stage, running since `started`."""
        pod = pod_node("p0", "vqvae(0)", "Running", started=started, progress=f"{progress}/100")
        nodes = [retry_node("r0", "vqvae", "Running", ["p0"]), pod]
        self.write(workflow_status("Running", nodes, startedAt=self.started, progress=f"{progress}/100"))

    def run_until_stopped(self, started: str, timeout: float = 20) -> dict[str, Any]:
        """Report progress every 0.2 s, as Argo's progress ticks do, until the operator stops the Workflow."""
        deadline = time.monotonic() + timeout
        progress = 1
        while time.monotonic() < deadline:
            workflow = self.get()
            if workflow["spec"].get("shutdown"):
                return workflow
            progress += 1
            self.running(started, progress)
            time.sleep(0.2)
        raise AssertionError(f"{self.workflow} was not stopped within {timeout} s")

    def stop_as_argo_does(self, started: str, report: dict[str, Any]) -> str:
        """The pod gets SIGTERM and exits 143 after its checkpoint; Argo retries nothing and ends the Workflow."""
        ended = at(0)
        pod = pod_node(
            "p0", "vqvae(0)", "Failed", started=started, finished=ended, progress="40/100", exit_code=143,
            message="workflow shutdown with strategy:  Stop",
        )  # fmt: skip
        pod["outputs"]["parameters"] = [{"name": "report", "value": json.dumps(report)}]
        retry = dict(retry_node("r0", "vqvae", "Failed", ["p0"]), message="Stopped with strategy 'Stop'")
        self.write(
            workflow_status(
                "Failed", [retry, pod], startedAt=self.started, finishedAt=ended, message="Stopped with strategy 'Stop'"
            )
        )
        return ended

    def succeed(self, started: str, report: dict[str, Any]) -> str:
        ended = at(0)
        pod = pod_node("p0", "vqvae(0)", "Succeeded", started=started, finished=ended, progress="100/100", exit_code=0)
        pod["outputs"]["parameters"] = [{"name": "report", "value": json.dumps(report)}]
        nodes = [retry_node("r0", "vqvae", "Succeeded", ["p0"]), pod]
        self.write(workflow_status("Succeeded", nodes, startedAt=self.started, finishedAt=ended))
        return ended


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of this type; an AssertionError (which `eventually` waits out) while there is none yet."""
    found = [c for c in status.get("conditions") or [] if c["type"] == kind]
    assert found, f"no {kind} condition yet in {status.get('conditions')}"
    return found[0]


def reasons(cluster: Cluster, name: str, kind: str = "Warning") -> list[str]:
    return [e["reason"] for e in cluster.events(name) if e["type"] == kind]


def phase_is(cluster: Cluster, phase: str, name: str = "fafa") -> dict[str, Any]:
    return eventually(lambda: (s := cluster.status(name)).get("phase") == phase and s, timeout=20)


@pytest.fixture()
def cluster(kube: RunningKube) -> Cluster:
    return Cluster(kube)


def test_warned_at_80_stopped_at_100_resumed_when_raised_stopped_when_lowered_and_finished(
    cluster: Cluster, operator_runner: Any
) -> None:
    with operator_runner(env=PRICES) as runner:
        cluster.apply(budgeted("fafa", 10))
        first = settled(cluster)
        run_id, argo = first["runId"], Argo(cluster, first["workflow"])
        assert first["budget"] == 10 and first["phase"] == "Pending"

        # 80 %: a Warning event and the BudgetWarning condition; the run goes on.
        started = at(8.5)
        argo.running(started)
        status = eventually(lambda: condition(s := cluster.status(), "BudgetWarning")["status"] == "True" and s)
        assert status["phase"] == "Running" and status["costUSD"] >= 8
        assert condition(status, "BudgetWarning")["reason"] == "MaxCost"
        eventually(lambda: "BudgetWarning" in reasons(cluster, "fafa"))

        # 100 %: stopped the Argo way, marked as ours; the status says it is stopping.
        stopped = argo.run_until_stopped(started)
        assert stopped["metadata"]["annotations"]["argomlops.dev/stopped-by"] == "MaxCost"
        assert cluster.status()["costUSD"] >= 10
        eventually(lambda: "OverBudget" in reasons(cluster, "fafa"))
        ended = argo.stop_as_argo_does(started, {**REPORT, "gcs": OPS})

        # OverBudget, with the checkpoint; not a preemption; the cost is the pod's seconds plus its requests.
        status = phase_is(cluster, "OverBudget")
        assert "vqvae/checkpoints/step-00000040" in status["message"] and "10 USD" in status["message"]
        assert (status["checkpoint"], status["attempts"], status["preemptions"]) == (REPORT["checkpoint"], 1, 0)
        first_seconds = seconds_between(started, ended)
        assert status["cost"] == {
            "node": 0.0, "gpu": pytest.approx(first_seconds), "storage": 0.0, "operations": pytest.approx(OPS_COST),
            "total": pytest.approx(first_seconds + OPS_COST),
        }  # fmt: skip
        assert condition(status, "OverBudget")["status"] == "True"
    assert runner.exception is None

    # A restarted operator keeps it stopped (and keeps charging it by the clock: nothing grows).
    with operator_runner(env=PRICES) as runner:
        charged = status["chargedAt"]
        again = eventually(lambda: (s := cluster.status())["chargedAt"] != charged and s, timeout=20)
        assert again["phase"] == "OverBudget" and again["costUSD"] == status["costUSD"]
        assert [w["metadata"]["name"] for w in cluster.children("workflows")] == [first["workflow"]]

        # Raised: the same run id resumes in a new Workflow of its own; the cost goes on from where it was.
        cluster.apply(budgeted("fafa", 40))
        resumed = eventually(lambda: (s := cluster.status()).get("resumes") == 1 and s)
        assert resumed["runId"] == run_id and resumed["runGeneration"] == first["runGeneration"]
        assert resumed["workflow"] == workflow_name("fafa", run_id, 1) and resumed["phase"] == "Pending"
        assert resumed["costUSD"] == pytest.approx(status["costUSD"])
        assert condition(resumed, "OverBudget")["status"] == "False"
        (second,) = [w for w in cluster.children("workflows") if w["metadata"]["name"] == resumed["workflow"]]
        assert second["metadata"]["labels"][LABEL_RUN_ID] == run_id
        assert {p["name"]: p["value"] for p in second["spec"]["arguments"]["parameters"]}["run-id"] == run_id
        eventually(lambda: "Resumed" in reasons(cluster, "fafa", "Normal"))

        # Lowered below what was spent: stopped again, at once.
        argo = Argo(cluster, resumed["workflow"])
        started = at(3)
        argo.running(started)
        eventually(lambda: cluster.status().get("phase") == "Running")
        cluster.apply(budgeted("fafa", 5))
        eventually(lambda: argo.get()["spec"].get("shutdown") == "Stop")
        ended = argo.stop_as_argo_does(started, {**REPORT, "checkpoint": "vqvae/checkpoints/step-00000055"})
        status = phase_is(cluster, "OverBudget")
        second_seconds = seconds_between(started, ended)

        # Raised again: a third Workflow finishes the run; its cost is all three pods' seconds.
        cluster.apply(budgeted("fafa", 1000))
        resumed = eventually(lambda: (s := cluster.status()).get("resumes") == 2 and s)
        argo = Argo(cluster, resumed["workflow"])
        started = at(2)
        argo.running(started)
        ended = argo.succeed(started, {**REPORT, "checkpoint": "vqvae/checkpoints/step-00000100"})
        status = phase_is(cluster, "Succeeded")
        total = first_seconds + second_seconds + seconds_between(started, ended)
        assert status["runId"] == run_id and status["attempts"] == 3 and status["preemptions"] == 0
        assert status["cost"]["gpu"] == pytest.approx(total) and status["costUSD"] == pytest.approx(total + OPS_COST)
        assert [u["workflow"] for u in status["usage"]] == [workflow_name("fafa", run_id, n) for n in range(3)]
        assert "history" not in status or not status["history"]  # one run, three Workflows
    assert runner.exception is None


def test_the_namespace_cap_stops_the_second_of_two_runs_and_never_a_queued_one(
    cluster: Cluster, operator_runner: Any
) -> None:
    with operator_runner(env={**PRICES, "ARGOMLOPS_MONTHLY_CAP": "10"}) as runner:
        # The first run spends 6 and finishes.
        cluster.apply(budgeted("first", None))
        first = Argo(cluster, settled(cluster, "first")["workflow"])
        pod = pod_node("p0", "vqvae(0)", "Succeeded", started=at(106), finished=at(100), exit_code=0)
        first.write(workflow_status("Succeeded", [pod], startedAt=at(106), finishedAt=at(100)))  # six seconds, earlier
        done = eventually(lambda: (s := cluster.status("first")).get("costUSD") == pytest.approx(6.0) and s)
        assert done["phase"] == "Succeeded"

        # A queued run costs nothing and is left alone, even once the namespace is over its cap.
        cluster.apply(budgeted("queued", None))
        queued = Argo(cluster, settled(cluster, "queued")["workflow"])
        queued.write(workflow_status("Pending", message=LOCK_MESSAGE.format(namespace=NS)))
        phase_is(cluster, "Queued", "queued")

        # The second run crosses 80 % and then 100 % of the namespace's 10: it is stopped.
        cluster.apply(budgeted("second", None))
        second = Argo(cluster, settled(cluster, "second")["workflow"])
        started = at(2)
        second.running(started)
        status = eventually(lambda: condition(s := cluster.status("second"), "BudgetWarning")["status"] == "True" and s)
        assert condition(status, "BudgetWarning")["reason"] == "NamespaceMonthlyCap"
        stopped = second.run_until_stopped(started)
        assert stopped["metadata"]["annotations"]["argomlops.dev/stopped-by"] == "NamespaceMonthlyCap"
        second.stop_as_argo_does(started, REPORT)
        status = phase_is(cluster, "OverBudget", "second")
        assert f"namespace {NS}" in status["message"]

        assert not first.get()["spec"].get("shutdown") and not queued.get()["spec"].get("shutdown")
        assert cluster.status("queued")["phase"] == "Queued" and cluster.status("queued").get("costUSD", 0) == 0
        spent = sum(cluster.status(name)["monthToDate"]["cost"] for name in ("first", "second"))
        assert spent >= 10

        # A person asks what the namespace spent this month (the kubeconfig's context namespace).
        done = subprocess.run([executable("argomlops"), "spend"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        table = done.stdout
        assert "first" in table and "second" in table and "queued" not in table
        total = next(line for line in table.splitlines() if line.startswith("total "))
        assert float(total.split()[-1]) == pytest.approx(spent, abs=1e-3)
        assert table.splitlines()[-1].split()[-1] == "10"

        # Once the queued run gets the GPU, its pod costs money: over the cap, it is stopped at once.
        queued.running(at(0))
        eventually(lambda: queued.get()["spec"].get("shutdown") == "Stop")
    assert runner.exception is None


def test_a_price_change_applies_from_when_the_operator_sees_it(cluster: Cluster, operator_runner: Any) -> None:
    with operator_runner(env=PRICES):
        cluster.apply(budgeted("fafa", None))
        argo = Argo(cluster, settled(cluster)["workflow"])
        started = at(10)
        argo.running(started)
        eventually(lambda: cluster.status().get("phase") == "Running")
    before = cluster.status()  # charged at the old price until the operator stopped
    # The GPU doubles in price; the operator restarts with it (helm upgrade rolls its pod).
    with operator_runner(env={**PRICES, "ARGOMLOPS_PRICE_PER_GPU_HOUR": "7200"}):
        ended = argo.succeed(started, {"stage": "vqvae"})
        status = phase_is(cluster, "Succeeded")
    charged_early = before["charged"]["gpuSeconds"]
    at_old_price = before["cost"]["gpu"]
    assert at_old_price == pytest.approx(charged_early)
    assert status["cost"]["gpu"] == pytest.approx(at_old_price + 2 * (seconds_between(started, ended) - charged_early))
