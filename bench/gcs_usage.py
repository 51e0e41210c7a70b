"""What one training run asks of the bucket, and what that costs at list price.

Starts a GCS emulator and the counting proxy of the tests (tests/gcs_proxy.py) in front of it, runs
`argomlops train CONFIG --set ...` with its artifacts in the emulator through the proxy, and prints:
uploads and their bytes against the final sizes of the distinct objects written, uploads per epoch,
requests by billing class (as the proxy saw them, and as the trainer's own report counted them), the
size of the run folder it keeps, and the cost of all that at the prices of the chart's defaults.

    .venv/bin/python bench/gcs_usage.py examples/quickstart.yaml --set 'stages=[vqvae]' --set training.vqvae.epochs=20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from gcs_emulator import GCSEmulator  # noqa: E402
from gcs_proxy import GCSProxy  # noqa: E402

from argomlops.config import load_config  # noqa: E402
from argomlops.operator.accounting import GIB, SECONDS_PER_MONTH  # noqa: E402
from argomlops.operator.settings import OperatorSettings  # noqa: E402

BUCKET = "bench-artifacts"
RUN_ID = "2026-12-01_12h00m00s"


def _shape(name: str) -> str:
    """An object name with steps, epochs, temp ids and event file stamps blanked: what kind of file it is."""
    name = name.split(f"{RUN_ID}/", 1)[-1]
    for pattern, blank in [
        (r"step-\d+", "step-N"),
        (r"epoch-\d+", "epoch-N"),
        (r"\.tmp-[0-9a-f]+", ".tmp-X"),
        (r"tfevents\..*", "tfevents.X"),
        (r"^code/.*", "code/*"),
    ]:
        name = re.sub(pattern, blank, name)
    return name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="run config, e.g. examples/quickstart.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE, as for train")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    epochs = sum(getattr(config.training, stage).epochs for stage in config.stages)

    emulator = GCSEmulator().start()
    proxy = GCSProxy(emulator.endpoint).start()
    try:
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.endpoint
        from argomlops.trainer.gcs_client import gcs_client

        gcs_client().create_bucket(BUCKET)
        with tempfile.TemporaryDirectory() as temp:
            report = Path(temp) / "report.json"
            env = {
                **os.environ,
                "STORAGE_EMULATOR_HOST": proxy.endpoint,
                "ARGOMLOPS_REPORT_FILE": str(report),
                "TF_CPP_MIN_LOG_LEVEL": "3",
            }
            command = [sys.executable, "-m", "argomlops.cli", "train", args.config, "--run-id", RUN_ID]
            command += [f"--set={item}" for item in args.overrides] + ["--artifacts", f"gs://{BUCKET}/runs"]
            started = time.monotonic()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            wall = time.monotonic() - started
            if done.returncode != 0:
                print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                return done.returncode
            reported = json.loads(report.read_text())["gcs"]
        kept = sum(int(b.size) for b in gcs_client().list_blobs(BUCKET, prefix=f"runs/{RUN_ID}/"))
        _print(proxy, reported, kept, epochs, wall)
    finally:
        proxy.stop()
        emulator.stop()
    return 0


def _print(proxy: GCSProxy, reported: dict[str, int], kept: int, epochs: int, wall: float) -> None:
    uploads = proxy.uploads()
    final = proxy.final_sizes()
    sent, written = proxy.uploaded_bytes(), sum(final.values())
    counts = proxy.counts()
    prices = OperatorSettings().prices()
    ops_cost = counts["A"] / 1000 * prices.class_a_per_1000 + counts["B"] / 1000 * prices.class_b_per_1000
    print(f"run: {epochs} epochs in {wall:.0f} s")
    print(f"uploads: {len(uploads)} ({len(uploads) / epochs:.1f} per epoch), {sent} bytes of content")
    print(f"distinct objects written: {len(final)}, {written} bytes at their final sizes: {sent / written:.3f}x")
    print(f"requests: class A {counts['A']}, class B {counts['B']}, free {counts['free']}")
    print(
        f"  the trainer's report: class A {reported['classA']}, class B {reported['classB']}, free {reported['free']}"
    )
    print(f"run folder kept: {kept} bytes ({kept / GIB:.6f} GiB); the report says {reported.get('storedBytes')}")
    month = kept / GIB * prices.gib_month
    print(f"at list price: operations {ops_cost:.6f} USD per run; storage {month:.6f} USD per month kept")
    print(f"  ({month * wall / SECONDS_PER_MONTH:.9f} USD while the run ran)")
    print("uploads by kind of object (count, bytes):")
    by_kind: Counter[str] = Counter()
    bytes_by_kind: Counter[str] = Counter()
    for record in uploads:
        by_kind[_shape(record.object or "?")] += 1
        bytes_by_kind[_shape(record.object or "?")] += record.payload
    for kind, count in by_kind.most_common():
        print(f"  {kind:56s} {count:6d} {bytes_by_kind[kind]:12d}")


if __name__ == "__main__":
    sys.exit(main())
