"""`argomlops operator` as a process: settings, namespace scope, liveness, SIGTERM; and no TensorFlow in it.

The process tests run the operator through tests/operator_process.py, so scripts/test-images runs them
against the operator image too ($ARGOMLOPS_OPERATOR_COMMAND), exactly as they run here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import kubernetes
from kube.fixtures import RunningKube, eventually
from operator_process import start_operator

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "argomlops.dev", "v1alpha1", "mlops"


def test_operator_modules_never_import_tensorflow() -> None:
    # Every module of the operator and the workflow builders, found on disk: a new one is checked too.
    code = (
        "import importlib, pkgutil, sys\n"
        "import argomlops.cli, argomlops.operator, argomlops.workflows\n"
        "for package in (argomlops.operator, argomlops.workflows):\n"
        "    for info in pkgutil.iter_modules(package.__path__, package.__name__ + '.'):\n"
        "        if info.name.endswith('.__main__'): continue  # runs the generator when imported\n"
        "        importlib.import_module(info.name)\n"
        "        print('imported', info.name)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')\n"
        "         or m.startswith('argomlops.trainer')]\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    lines = done.stdout.strip().splitlines()
    assert "imported argomlops.operator.handlers" in lines and "imported argomlops.workflows.template" in lines
    assert lines[-1] == "[]"


def test_a_bad_setting_is_one_line_and_exit_2() -> None:
    env = dict(os.environ, ARGOMLOPS_PRICE_PER_GPU_HOUR="cheap")
    process = start_operator([], env)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2
    assert output.strip() == (
        "argomlops operator: ARGOMLOPS_PRICE_PER_GPU_HOUR: Input should be a valid number, "
        "unable to parse string as a number (got 'cheap')"
    )


def _within(seconds: float, check: Callable[[], object]) -> bool:
    """Whether `check()` holds within `seconds` (False rather than an error: the caller shows the log)."""
    try:
        eventually(check, timeout=seconds)
    except AssertionError:
        return False
    return True


def _output_of(process: subprocess.Popen[str]) -> str:
    """What the process wrote so far (it is stopped to read it)."""
    process.terminate()
    return process.communicate(timeout=60)[0][-4000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_operator_process_serves_its_namespace_answers_liveness_and_stops_on_sigterm(kube: RunningKube) -> None:
    port = _free_port()
    env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig), ARGOMLOPS_NAMESPACES="ml")
    env["ARGOMLOPS_TRAINER_IMAGE"] = "registry.example/argomlops-trainer:1.2.3"
    args = ["--standalone", "--liveness", f"http://127.0.0.1:{port}/healthz", "--history-limit", "2"]
    process = start_operator(args, env)
    try:
        custom = kubernetes.client.CustomObjectsApi(kube.api())
        for namespace in ("ml", "elsewhere"):
            body = {"kind": "MLOps", "metadata": {"name": "fafa"}, "spec": {"artifacts": "gs://bucket/runs"}}
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        made = _within(60, lambda: kube.objects("workflows", "ml") or process.poll() is not None)
        assert made and process.poll() is None, _output_of(process)
        # What the in-process operator makes of a create (test_operator_runs.py): one ConfigMap, one Workflow.
        (workflow,) = kube.objects("workflows", "ml")
        (config_map,) = eventually(lambda: kube.objects("configmaps", "ml"))
        status = custom.get_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, "fafa")["status"]
        assert workflow["metadata"]["name"] == config_map["metadata"]["name"] == status["workflow"]
        arguments = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
        assert arguments["image"] == env["ARGOMLOPS_TRAINER_IMAGE"]  # no spec.image: the operator's default
        assert arguments["config-map"] == config_map["metadata"]["name"] and "run.yaml" in config_map["data"]

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        eventually(healthy, timeout=30)
        assert not kube.objects("workflows", "elsewhere")
        assert "status" not in custom.get_namespaced_custom_object(GROUP, VERSION, "elsewhere", PLURAL, "fafa")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    started = (
        "argomlops operator: ml; prices USD: GPU-hour 0.14, node-hour 0.0403, GiB-month 0.02, 1000 class A 0.005, "
        "1000 class B 0.0004; monthly cap none; history 2; watch timeout 300s; "
        "trainer image registry.example/argomlops-trainer:1.2.3"
    )
    assert started in output
    assert "\x1b[" not in output  # plain lines
