"""`argomlops operator` as a process: settings, namespace scope, liveness, SIGTERM; and no TensorFlow in it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import kubernetes
from executables import executable
from kube.fixtures import RunningKube, eventually

ROOT = Path(__file__).resolve().parents[1]
ARGOMLOPS = executable("argomlops")
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
    done = subprocess.run([str(ARGOMLOPS), "operator"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "argomlops operator: ARGOMLOPS_PRICE_PER_GPU_HOUR: Input should be a valid number, "
        "unable to parse string as a number (got 'cheap')"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_operator_process_serves_its_namespace_answers_liveness_and_stops_on_sigterm(kube: RunningKube) -> None:
    port = _free_port()
    env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig), ARGOMLOPS_NAMESPACES="ml")
    args = ["operator", "--standalone", "--liveness", f"http://127.0.0.1:{port}/healthz", "--history-limit", "2"]
    process = subprocess.Popen(
        [str(ARGOMLOPS), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        custom = kubernetes.client.CustomObjectsApi(kube.api())
        for namespace in ("ml", "elsewhere"):
            body = {"kind": "MLOps", "metadata": {"name": "fafa"}, "spec": {"artifacts": "gs://bucket/runs"}}
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        eventually(lambda: kube.objects("workflows", "ml") or process.poll() is not None, timeout=60)
        assert process.poll() is None, process.communicate()[0]

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
        "1000 class B 0.0004; monthly cap none; history 2; watch timeout 300s"
    )
    assert started in output
    assert "\x1b[" not in output  # plain lines
