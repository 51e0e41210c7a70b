"""How fast the operator turns MLOps objects into Workflows, and how much memory it holds.

Starts the test API server (tests/kube/) in this process and `argomlops operator --standalone` as a
child process against it, creates N MLOps objects as fast as the client can, and reports the time until
N Workflows exist, until every object's status is settled, and the operator's peak RSS (VmHWM).

    .venv/bin/python bench/operator_throughput.py            # --count 50 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import kubernetes  # noqa: E402
from kube.fixtures import RunningKube, eventually  # noqa: E402

GROUP, VERSION, PLURAL, NS = "argomlops.dev", "v1alpha1", "mlops", "default"


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_round(count: int) -> tuple[float, float, float, float]:
    """(start-up s, s to N Workflows, s to N settled statuses, peak RSS MiB) of one fresh operator."""
    with tempfile.TemporaryDirectory() as tmp:
        kube = RunningKube(Path(tmp))
        env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig))
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("argomlops")), "operator", "--standalone"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            custom = kubernetes.client.CustomObjectsApi(kube.api())
            # The operator is ready once a first object got its Workflow (start-up includes imports).
            probe = {"kind": "MLOps", "metadata": {"name": "probe"}, "spec": {"artifacts": "gs://bucket/runs"}}
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, probe)
            eventually(lambda: kube.objects("workflows", NS), timeout=120)
            startup = time.perf_counter() - started

            begin = time.perf_counter()
            for i in range(count):
                body = {
                    "kind": "MLOps",
                    "metadata": {"name": f"run-{i:03d}"},
                    "spec": {"artifacts": "gs://bucket/runs"},
                }
                custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
            eventually(lambda: len(kube.objects("workflows", NS)) >= count + 1, timeout=600, interval=0.02)
            to_workflows = time.perf_counter() - begin

            def settled() -> bool:
                items = kube.objects("mlops", NS)
                return all((o.get("status") or {}).get("observedGeneration") == 1 for o in items)

            eventually(settled, timeout=600, interval=0.02)
            to_settled = time.perf_counter() - begin
            rss = peak_rss_mib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=60)
            kube.stop()
    return startup, to_workflows, to_settled, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50, help="MLOps objects created in one burst")
    parser.add_argument("--repeats", type=int, default=3, help="fresh server + operator per repeat")
    args = parser.parse_args()
    rounds = [one_round(args.count) for _ in range(args.repeats)]
    for i, (startup, workflows, settled, rss) in enumerate(rounds, 1):
        print(
            f"round {i}: start-up {startup:.2f} s; {args.count} creates -> {args.count} Workflows {workflows:.2f} s "
            f"({args.count / workflows:.1f}/s); all statuses settled {settled:.2f} s; peak RSS {rss:.0f} MiB"
        )
    print(
        f"median: {args.count} Workflows in {statistics.median(r[1] for r in rounds):.2f} s, "
        f"settled in {statistics.median(r[2] for r in rounds):.2f} s, "
        f"peak RSS {statistics.median(r[3] for r in rounds):.0f} MiB"
    )


if __name__ == "__main__":
    main()
