"""MLOpsSweep as the operator runs it, with the trainer and Argo played by the test (no TensorFlow here).

The real kopf operator runs against the test API server. Each trial is an ordinary MLOps object, so the
operator's own MLOps handlers make its Workflow; the test then writes what a trainer and Argo would:
`<run>/vqvae/metrics.jsonl` lines in a local artifacts folder (the operator reads a local path from its
file system, as it reads gs:// from the bucket) and the Workflow's status (tests/test_operator_budget.py's
`Argo`). Prices are steep (a GPU-second costs 1 USD) so the budget is reached within the test.
tests/e2e/test_sweep_e2e.py runs the same with the Argo stand-in and real trainer processes.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kube.fixtures import RunningKube, eventually
from test_operator_budget import PRICES, REPORT, Argo, at
from test_operator_runs import NS, Cluster, manifest

from argomlops.config.sweep import validate_sweep
from argomlops.sweeps import study as search

GROUP, VERSION, SWEEPS = "argomlops.dev", "v1alpha1", "mlopssweeps"
RATES = [0.001, 0.002, 0.003, 0.004, 0.005, 1e-6]
HOPELESS = 1e-6
EPOCHS = 3


def sweep_manifest(name: str, artifacts: Path, **spec: Any) -> dict[str, Any]:
    """A grid sweep over six learning rates of the fafa template (vqvae only, three epochs, local artifacts)."""
    template = manifest()["spec"]
    template.update(artifacts=str(artifacts), stages=["vqvae"])
    template["training"]["vqvae"]["epochs"] = EPOCHS
    body = {
        "template": template,
        "parameters": [{"path": "training.vqvae.learningRate", "choices": RATES}],
        "objective": {"metric": "vqvae.val_mse"},
        "trials": len(RATES),
        "parallelism": 2,
        "sampler": "grid",
        "pruner": {"type": "median", "startupTrials": 1, "warmupEpochs": 0},
        "budget": {"maxCost": 100000},
        **spec,
    }
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MLOpsSweep", "metadata": {"name": name}, "spec": body}


def grid_order(spec: dict[str, Any]) -> list[float]:
    """The learning rate of trial 0, 1, ...: what the grid sampler gives with this seed (asked one by one)."""
    parsed = validate_sweep(spec)
    study = search.rebuild(parsed, "grid", [])
    return [search.suggest(study, parsed)[1]["training.vqvae.learningRate"] for _ in RATES]


def seed_with_hopeless_third(body: dict[str, Any]) -> int:
    """A seed whose grid puts the hopeless learning rate at trial 2: after two trials are complete."""
    return next(seed for seed in range(100) if grid_order({**body, "seed": seed}).index(HOPELESS) == 2)


class Sweeps:
    """What `kubectl` does with MLOpsSweep objects, and what the test reads of them and their trials."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.custom = cluster.custom

    def create(self, obj: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, SWEEPS, obj)

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, SWEEPS, name)
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def set_budget(self, name: str, max_cost: float) -> None:
        for _ in range(10):
            current = self.get(name)
            current["spec"]["budget"] = {"maxCost": max_cost}
            try:
                self.custom.replace_namespaced_custom_object(GROUP, VERSION, NS, SWEEPS, name, current)
                return
            except kubernetes.client.ApiException as exc:
                if exc.status != 409:
                    raise
        raise AssertionError("the sweep kept changing")

    def trials(self, name: str) -> list[dict[str, Any]]:
        found = [
            o
            for o in self.cluster.kube.objects("mlops", NS)
            if o["metadata"].get("labels", {}).get("argomlops.dev/sweep") == name
        ]
        return sorted(found, key=lambda o: int(o["metadata"]["labels"]["argomlops.dev/trial"]))

    def events(self, name: str) -> list[str]:
        return [e["reason"] for e in self.cluster.events(name)]


class Trainer:
    """One trial's run, played: metrics.jsonl lines in its run folder, its pod's progress in its Workflow."""

    def __init__(self, cluster: Cluster, name: str, resumes: int = 0) -> None:
        def started() -> dict[str, Any] | None:
            try:
                status = cluster.status(name)
            except kubernetes.client.ApiException as exc:
                assert exc.status == 404, exc
                return None  # the sweep has not made it yet
            if not status.get("workflow") or (status.get("resumes") or 0) != resumes:
                return None
            # The status names the Workflow before it is created (so a restart makes the same one).
            made = {w["metadata"]["name"] for w in cluster.kube.objects("workflows", NS)}
            return status if status["workflow"] in made else None

        status = eventually(started, timeout=20)
        self.cluster, self.name = cluster, name
        self.run = Path(status["artifacts"])
        self.argo = Argo(cluster, status["workflow"])
        self.started = at(3)

    @property
    def rate(self) -> float:
        params = json.loads(self.cluster.mlops(self.name)["metadata"]["annotations"]["argomlops.dev/trial-parameters"])
        return float(params["training.vqvae.learningRate"])

    def epoch(self, epoch: int, value: float) -> None:
        metrics = self.run / "vqvae" / "metrics.jsonl"
        metrics.parent.mkdir(parents=True, exist_ok=True)
        with metrics.open("a") as out:
            out.write(json.dumps({"stage": "vqvae", "epoch": epoch, "step": 10 * epoch, "val_mse": value}) + "\n")
        self.argo.running(self.started, progress=10 * epoch)

    def stopped(self) -> bool:
        return bool(self.argo.get()["spec"].get("shutdown"))

    def succeed(self) -> None:
        self.argo.succeed(self.started, REPORT)

    def stop(self) -> None:
        self.argo.stop_as_argo_does(self.started, REPORT)


def value_of(number: int, epoch: int, rate: float) -> float:
    """The val_mse the test's trainer reports: each later trial better than the earlier ones, the hopeless worst."""
    return (10.0 if rate == HOPELESS else 1.0 - 0.1 * number) / epoch


def run_to_success(trainer: Trainer, number: int) -> None:
    for epoch in range(1, EPOCHS + 1):
        trainer.epoch(epoch, value_of(number, epoch, trainer.rate))
    trainer.succeed()


@pytest.fixture()
def cluster(kube: RunningKube) -> Cluster:
    return Cluster(kube)


def test_a_sweep_within_parallelism_prunes_stops_at_its_budget_resumes_and_reports_the_best(
    cluster: Cluster, operator_runner: Any, tmp_path: Path
) -> None:
    sweeps = Sweeps(cluster)
    obj = sweep_manifest("lr", tmp_path / "runs")
    obj["spec"]["seed"] = seed_with_hopeless_third(obj["spec"])
    order = grid_order(obj["spec"])
    with operator_runner(env=PRICES) as runner:
        sweeps.create(obj)
        # 1. Two trials at once (parallelism), each an MLOps object of the sweep, owned by it.
        eventually(lambda: len(sweeps.trials("lr")) == 2, timeout=20)
    assert runner.exception is None

    # The operator is stopped and started again mid-sweep: it rebuilds the study from the trial objects.
    with operator_runner(env=PRICES) as runner:
        first = sweeps.trials("lr")
        uid = sweeps.get("lr")["metadata"]["uid"]
        assert [t["metadata"]["name"] for t in first] == ["lr-t0", "lr-t1"]
        assert all(t["metadata"]["ownerReferences"][0]["uid"] == uid for t in first)
        trainers = [Trainer(cluster, "lr-t0"), Trainer(cluster, "lr-t1")]
        for epoch in range(1, EPOCHS + 1):  # side by side: neither is complete while the other reports
            for number, trainer in enumerate(trainers):
                trainer.epoch(epoch, value_of(number, epoch, trainer.rate))
        for trainer in trainers:
            trainer.succeed()
        status = eventually(lambda: (s := sweeps.status("lr")).get("trialsDone") == 2 and s, timeout=20)
        assert status["bestTrial"] == "lr-t1"
        assert status["bestObjective"] == pytest.approx(0.9 / EPOCHS)
        eventually(lambda: len(sweeps.trials("lr")) == 4, timeout=20)
        assert len(sweeps.trials("lr")) == 4  # never more than two in progress

        # 2. The hopeless trial is pruned at its first epoch: stopped the Argo way, marked Pruned.
        hopeless, fourth = Trainer(cluster, "lr-t2"), Trainer(cluster, "lr-t3")
        assert hopeless.rate == HOPELESS
        hopeless.epoch(1, value_of(2, 1, HOPELESS))
        eventually(hopeless.stopped, timeout=20)
        assert hopeless.argo.get()["metadata"]["annotations"]["argomlops.dev/stopped-by"] == "Pruned"
        hopeless.stop()
        eventually(lambda: cluster.status("lr-t2").get("phase") == "Pruned", timeout=20)
        assert "pruned by its sweep" in cluster.status("lr-t2")["message"]
        fifth = Trainer(cluster, "lr-t4")

        # 3. The budget: set to what was spent, the two trials in progress are stopped after a checkpoint.
        fourth.epoch(1, value_of(3, 1, fourth.rate))
        fifth.epoch(1, value_of(4, 1, fifth.rate))
        eventually(lambda: (s := sweeps.status("lr")).get("trials") and s["trials"][3].get("epochs") == 1, timeout=20)
        spent = sweeps.status("lr")["costUSD"]
        sweeps.set_budget("lr", spent)
        eventually(lambda: fourth.stopped() and fifth.stopped(), timeout=20)
        fourth.stop()
        fifth.stop()
        over = eventually(lambda: (s := sweeps.status("lr")).get("phase") == "OverBudget" and s, timeout=20)
        assert over["costUSD"] >= over["budget"] and "raise budget.maxCost" in over["message"]
        assert [t["phase"] for t in over["trials"]] == ["Succeeded", "Succeeded", "Pruned", "OverBudget", "OverBudget"]
        assert len(sweeps.trials("lr")) == 5  # no new trial over budget

        # 4. Raised: both resume from their checkpoints (new Workflows of the same runs); the last trial runs.
        sweeps.set_budget("lr", 100000)
        resumed = {number: Trainer(cluster, f"lr-t{number}", resumes=1) for number in (3, 4)}
        time.sleep(4)  # two passes of the sweep while both resume: still two in progress, no sixth trial
        assert len(sweeps.trials("lr")) == 5
        for number, trainer in resumed.items():
            run_to_success(trainer, number)
        last = Trainer(cluster, "lr-t5")
        run_to_success(last, 5)
        done = eventually(lambda: (s := sweeps.status("lr")).get("phase") == "Succeeded" and s, timeout=30)
        # kopf posts events from a queue of its own: wait for them while the operator still runs.
        wanted = {"TrialCreated", "Pruned", "Best", "OverBudget", "Succeeded"}
        eventually(lambda: wanted <= set(sweeps.events("lr")), timeout=20)
    assert runner.exception is None

    # 5. Every trial once, with the parameters the seed's grid gives, and the best reported.
    trials = sweeps.trials("lr")
    assert [t["metadata"]["name"] for t in trials] == [f"lr-t{n}" for n in range(len(RATES))]
    rates = [json.loads(t["metadata"]["annotations"]["argomlops.dev/trial-parameters"]) for t in trials]
    assert [r["training.vqvae.learningRate"] for r in rates] == order
    assert (done["progress"], done["trialsDone"], done["trialsTotal"]) == ("6/6", 6, 6)
    assert [t["state"] for t in done["trials"]] == [
        "Complete",
        "Complete",
        "Pruned",
        "Complete",
        "Complete",
        "Complete",
    ]
    assert done["bestTrial"] == "lr-t5" and done["bestObjective"] == pytest.approx(0.5 / EPOCHS)
    assert done["bestParameters"] == {"training.vqvae.learningRate": order[5]}
    assert done["costUSD"] == pytest.approx(sum(cluster.status(t["metadata"]["name"])["costUSD"] for t in trials))
    assert done["trials"][2]["message"].startswith("pruned at epoch 1 of 3: val_mse")
    assert wanted <= set(sweeps.events("lr"))


MALFORMED = {
    "unknown-path": (
        {"parameters": [{"path": "training.vqvae.learningRat", "choices": [0.001]}]},
        ["parameters[0].path: template.training.vqvae has no field learningRat (it has: batchSize, checkpointEvery, "
         "epochs, imagesEvery, learningRate, learningRateSchedule, stepsPerEpoch, warmupSteps)"],
    ),
    "invalid-trial": (
        {"parameters": [{"path": "models.vqvae.embeddingDim", "choices": [16, 0]}]},
        ["parameters[0].choices[1]: models.vqvae.embeddingDim=0 makes an invalid trial: models.vqvae.embeddingDim: "
         "Input should be greater than or equal to 1 (got 0)"],
    ),
    "grid-of-ranges": (
        {"parameters": [{"path": "training.vqvae.learningRate", "float": {"low": 0.003, "high": 0.001}}],
         "trials": 0},
        ["parameters[0].float.high: 0.001 must be above low (0.003)",
         "trials: Input should be greater than or equal to 1 (got 0)"],
    ),
    "objective-elsewhere": (
        {"objective": {"metric": "pixelcnn.val_loss"}},
        ["objective.metric: stage pixelcnn is not in template.stages ['vqvae']"],
    ),
}  # fmt: skip


def test_malformed_sweeps_are_invalid_with_one_line_each_and_make_nothing(
    cluster: Cluster, operator_runner: Any, tmp_path: Path
) -> None:
    sweeps = Sweeps(cluster)
    with operator_runner() as runner:
        for name, (change, _lines) in MALFORMED.items():
            obj = sweep_manifest(name, tmp_path)
            obj["spec"].update(copy.deepcopy(change))
            sweeps.create(obj)
        too_long = sweep_manifest("a" * 51, tmp_path)
        sweeps.create(too_long)
        for name, (_change, lines) in MALFORMED.items():
            status = eventually(lambda name=name: (s := sweeps.status(name)).get("phase") == "Invalid" and s)
            assert status["errors"] == lines, name
            assert status["message"].startswith(f"spec is invalid ({len(lines)} problem")
            eventually(lambda name=name: "Invalid" in sweeps.events(name))
        status = eventually(lambda: (s := sweeps.status("a" * 51)).get("phase") == "Invalid" and s)
        assert status["errors"] == ["metadata.name: at most 50 characters (it labels every trial), got 51"]
    assert runner.exception is None
    assert not cluster.kube.objects("mlops", NS) and not cluster.kube.objects("workflows", NS)
