"""End to end: an MLOpsSweep → trial MLOps objects → Workflows → real trainer trials → pruned, budget-stopped, best.

Real parts, as in test_e2e.py: the operator (here `argomlops operator` processes, so that one can be
killed with SIGKILL mid-sweep), the test API server, the GCS emulator holding the trials' run folders
(the operator reads their metrics.jsonl from it, as it would from the bucket), kubectl, and the trainer as
real subprocesses. Stand-in: the Argo controller (argo_standin.py), one per trial Workflow, side by side.

The sweep: a grid of six learning rates of a tiny VQ-VAE (16 px, a few steps per epoch), two trials at a
time, the median pruner once two trials are complete. The seed is chosen (through the sweep's own grid
order) so that the first two trials are the slow learners, the third the hopeless one (1e-6), and the
later ones better than the first two: so exactly the hopeless trial is pruned. The budget is lowered to
what was spent while trials 3 and 4 train: they are stopped after a checkpoint and the sweep ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from argo_standin import ArgoStandIn, Preemptions
from executables import executable
from kube.fixtures import TRAINER_IMAGE, eventually
from test_e2e import NAMESPACE, ROOT, STEEP_NODE, _install_cluster_side, _kubectl

from argomlops.config.sweep import validate_sweep
from argomlops.sweeps import study as search

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SLOW, HOPELESS, FAST = [0.0005, 0.0007], 1e-6, [0.003, 0.0025, 0.002]
RATES = [*SLOW, HOPELESS, *FAST]


def sweep_spec(bucket: str) -> dict[str, Any]:
    smoke = yaml.safe_load((ROOT / "examples" / "mlops-smoke.yaml").read_text())["spec"]
    template = {
        **smoke,
        "artifacts": f"gs://{bucket}/runs",
        "stages": ["vqvae"],
        "data": {"source": "builtin:demo", "imageSize": 16},
        "training": {"vqvae": {"epochs": 10, "batchSize": 8, "stepsPerEpoch": 20, "imagesEvery": 0}},
    }
    spec: dict[str, Any] = {
        "template": template,
        "parameters": [{"path": "training.vqvae.learningRate", "choices": RATES}],
        "objective": {"metric": "vqvae.val_mse"},
        "trials": len(RATES),
        "parallelism": 2,
        "sampler": "grid",
        "pruner": {"type": "median", "startupTrials": 2, "warmupEpochs": 0},
        "budget": {"maxCost": 100000},
    }
    spec["seed"] = next(seed for seed in range(2000) if _wanted(grid_order({**spec, "seed": seed})))
    return spec


def grid_order(raw: dict[str, Any]) -> list[float]:
    spec = validate_sweep(raw)
    study = search.rebuild(spec, "e2e", [])
    return [search.suggest(study, spec)[1]["training.vqvae.learningRate"] for _ in RATES]


def _wanted(order: list[float]) -> bool:
    return set(order[:2]) == set(SLOW) and order[2] == HOPELESS


class Operator:
    """`argomlops operator` as a process of its own, logging to a file."""

    def __init__(self, log: Path) -> None:
        env = {**os.environ, **STEEP_NODE, "ARGOMLOPS_TRAINER_IMAGE": TRAINER_IMAGE}  # as the chart sets it
        command = [executable("argomlops"), "operator", "--namespace", NAMESPACE, "--standalone"]
        self.log = log.open("w")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


class StandIns(threading.Thread):
    """Runs every trial Workflow that appears with an Argo stand-in of its own, in a thread of its own."""

    def __init__(self, kube: Any, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.kube, self.workdir, self.env = kube, workdir, env
        self.standins: dict[str, ArgoStandIn] = {}
        self.ended: dict[str, str] = {}
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for workflow in self.kube.objects("workflows", NAMESPACE):
                name = workflow["metadata"]["name"]
                if name not in self.standins:
                    folder = self.workdir / name
                    folder.mkdir(parents=True)
                    standin = ArgoStandIn(self.kube.api(), NAMESPACE, folder, self.env, Preemptions(count=0))
                    self.standins[name] = standin
                    threading.Thread(target=self._run, args=(name, standin), daemon=True).start()
            self._stop_event.wait(0.3)

    def _run(self, name: str, standin: ArgoStandIn) -> None:
        try:
            self.ended[name] = standin.run(name, timeout=600)
        except Exception as exc:  # reported by the test, with the trainer's log
            self.errors.append(f"{name}: {exc}")

    def attempts_of(self, trial: str) -> list[Any]:
        return [a for name, s in self.standins.items() if name.startswith(f"{trial}-") for a in s.attempts]

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def _custom(kube: Any) -> Any:
    return kubernetes.client.CustomObjectsApi(kube.api())


def _sweep(kube: Any) -> dict[str, Any]:
    obj: dict[str, Any] = _custom(kube).get_namespaced_custom_object(
        "argomlops.dev", "v1alpha1", NAMESPACE, "mlopssweeps", "lr"
    )
    return obj


def _trials(kube: Any) -> dict[str, dict[str, Any]]:
    found = [o for o in kube.objects("mlops", NAMESPACE) if o["metadata"]["labels"].get("argomlops.dev/sweep") == "lr"]
    return {o["metadata"]["name"]: o for o in found}


def _phase(kube: Any, trial: str) -> str | None:
    return (_trials(kube).get(trial, {}).get("status") or {}).get("phase")


def _training(kube: Any, trial: str, epochs: int = 5) -> bool:
    status = _trials(kube).get(trial, {}).get("status") or {}
    return status.get("phase") == "Running" and int((status.get("epoch") or "0/1").split("/")[0]) >= epochs


def _until(kube: Any, standins: StandIns, check: Any, timeout: float) -> Any:
    """`eventually`, failing with the stand-ins' errors and the sweep's and trials' statuses."""
    try:
        return eventually(check, timeout=timeout)
    except AssertionError as exc:
        statuses = {name: obj.get("status") for name, obj in _trials(kube).items()}
        raise AssertionError(
            f"{exc}\nstand-ins: {standins.errors}\nsweep: {_sweep(kube).get('status')}\ntrials: {statuses}"
        ) from None


def _set_budget(kube: Any, max_cost: float) -> None:
    for _ in range(10):
        current = _sweep(kube)
        current["spec"]["budget"] = {"maxCost": max_cost}
        try:
            _custom(kube).replace_namespaced_custom_object(
                "argomlops.dev", "v1alpha1", NAMESPACE, "mlopssweeps", "lr", current
            )
            return
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
    raise AssertionError("the sweep kept changing")


def _final_val_mse(bucket: str, run: str) -> float:
    from argomlops.trainer.gcs_client import gcs_client

    prefix = run[len(f"gs://{bucket}/") :]
    text = gcs_client().bucket(bucket).blob(f"{prefix}/vqvae/metrics.jsonl").download_as_text()
    return float(json.loads(text.splitlines()[-1])["val_mse"])


def test_a_sweep_prunes_the_hopeless_trial_survives_a_killed_operator_and_ends_at_its_budget(
    kube: Any, gcs_bucket: str, gcs_emulator: str, argomlops_cache: Path, tmp_path: Path
) -> None:
    _install_cluster_side(kube)
    kubernetes.client.ApiextensionsV1Api(kube.api()).create_custom_resource_definition(
        yaml.safe_load((ROOT / "crds" / "mlopssweep.yaml").read_text())
    )
    spec = sweep_spec(gcs_bucket)
    order = grid_order(spec)
    manifest = {"apiVersion": "argomlops.dev/v1alpha1", "kind": "MLOpsSweep", "metadata": {"name": "lr"}, "spec": spec}
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator, "ARGOMLOPS_CACHE": str(argomlops_cache)}
    standins = StandIns(kube, tmp_path / "argo", env)
    first = Operator(tmp_path / "operator-1.log")
    try:
        _kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(manifest))
        standins.start()
        # 1. Two trials at once; once both train, the operator is killed (no goodbye) and another one started.
        _until(kube, standins, lambda: _training(kube, "lr-t0") and _training(kube, "lr-t1"), timeout=180)
        assert sorted(_trials(kube)) == ["lr-t0", "lr-t1"]
        first.kill()
        second = Operator(tmp_path / "operator-2.log")

        # 2. The hopeless third trial is pruned once two are complete: stopped at a checkpoint, ended Pruned.
        _until(kube, standins, lambda: _phase(kube, "lr-t2") == "Pruned", timeout=240)
        (pruned,) = standins.attempts_of("lr-t2")
        assert pruned.stopped and pruned.exit_code == 143, pruned.log[-2000:]
        assert "SIGTERM: checkpointing" in pruned.log

        # 3. While trial 4 trains, the budget is lowered to what was spent: what runs is stopped, the sweep
        # ends. (Trial 3 overlaps trial 4 for a few seconds only: it may finish first, and trial 5 start.)
        _until(kube, standins, lambda: _training(kube, "lr-t4", epochs=1), timeout=240)
        _set_budget(kube, _sweep(kube)["status"]["costUSD"])
        over = _until(
            kube, standins, lambda: (s := _sweep(kube).get("status") or {}).get("phase") == "OverBudget" and s, 120
        )
        started = sorted(_trials(kube))
        time.sleep(5)  # more passes of the sweep: still no new trial
        assert sorted(_trials(kube)) == started and started[:5] == [f"lr-t{n}" for n in range(5)]
        assert second.stop() == 0
    finally:
        standins.stop()
        if first.process.poll() is None:
            first.kill()
    assert not standins.errors, standins.errors
    with open(tmp_path / "operator-2.log") as log:
        assert "Traceback" not in log.read()

    # 4. Each trial once, with the grid's parameters; the best is the complete trial with the lowest val_mse.
    trials = _trials(kube)
    for number, rate in enumerate(order[: len(started)]):
        annotation = json.loads(trials[f"lr-t{number}"]["metadata"]["annotations"]["argomlops.dev/trial-parameters"])
        assert annotation == {"training.vqvae.learningRate": rate}
    entries = {entry["name"]: entry for entry in over["trials"]}
    assert [entries[f"lr-t{n}"]["state"] for n in range(3)] == ["Complete", "Complete", "Pruned"]
    stopped = [name for name in started[3:] if entries[name]["phase"] != "Succeeded"]
    assert stopped and {entries[name]["phase"] for name in stopped} <= {"OverBudget", "Pruned"}
    assert "OverBudget" in {entries[name]["phase"] for name in stopped}
    complete = {
        name: _final_val_mse(gcs_bucket, trials[name]["status"]["artifacts"])
        for name in started
        if entries[name]["state"] == "Complete"
    }
    best = min(complete, key=lambda name: complete[name])
    assert over["bestTrial"] == best and over["bestObjective"] == pytest.approx(complete[best])
    assert over["costUSD"] >= over["budget"] and "raise budget.maxCost" in over["message"]
    assert len(standins.attempts_of("lr-t0")) == len(standins.attempts_of("lr-t1")) == 1  # nothing ran twice
    table = _kubectl("get", "mlopssweep", "lr", "-n", NAMESPACE)
    assert table.split()[:7] == ["NAME", "PHASE", "TRIALS", "BEST", "BEST", "TRIAL", "COST"]
    done = len(started) - len(stopped)  # the complete and the pruned trials
    assert "OverBudget" in table and f"{done}/6" in table and best in table
    listed = _kubectl("get", "mlops", "-l", "argomlops.dev/sweep=lr", "-n", NAMESPACE, "-o", "name")
    assert len(listed.split()) == len(started)
