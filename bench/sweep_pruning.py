"""Pruning in a sweep: best objective and trial-epochs of the same 12-trial sweep with and without a pruner.

Runs `argomlops sweep examples/sweep.yaml` (the quickstart's VQ-VAE: learning rate x embeddingDim x
numEmbeddings, objective vqvae.val_mse) once per pruner, each in its own artifacts folder, with the same
seed, trials and budget. The sampler is `random` by default: its trial n depends only on the seed and n
(argomlops/sweeps/study.py), so every arm trains the same 12 configurations and the pruner alone decides
how much of each is trained; `--sampler tpe` compares the sweeps as a person would run them (TPE then
learns from different histories).

Trial-epochs are the epochs the trials trained, summed: each trial's steps (its provenance.json, exact
for a pruned trial stopped mid-epoch) over the steps per epoch. The machine is shared, so wall time is
printed but trial-epochs are the figure to compare. An interrupted benchmark continues where it stopped
when run again with the same arguments (each arm is a resumable sweep). Prints a table and one JSON line.

    .venv/bin/python bench/sweep_pruning.py                                  # the full sweep, 3 arms
    .venv/bin/python bench/sweep_pruning.py --epochs 4 --steps 20 --image-size 32   # a reduced one
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default=str(ROOT / "examples" / "sweep.yaml"), help="the sweep to run")
    parser.add_argument("--pruners", nargs="+", default=["none", "median", "successiveHalving"])
    parser.add_argument("--sampler", default="random", choices=["random", "tpe", "grid"])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="training.vqvae.epochs (default: the sweep's)")
    parser.add_argument("--steps", type=int, help="training.vqvae.stepsPerEpoch (default: the sweep's)")
    parser.add_argument("--image-size", type=int, help="data.imageSize (default: the sweep's)")
    parser.add_argument("--artifacts", default="bench-runs/sweep-pruning", help="one folder per arm below this")
    return parser.parse_args()


def _overrides(args: argparse.Namespace, pruner: str) -> list[str]:
    sets = [f"sampler={args.sampler}", f"trials={args.trials}", f"seed={args.seed}", f"pruner.type={pruner}"]
    sets.append(f"artifacts={Path(args.artifacts) / pruner}")
    for key, value in (
        ("training.vqvae.epochs", args.epochs),
        ("training.vqvae.stepsPerEpoch", args.steps),
        ("data.imageSize", args.image_size),
    ):
        if value is not None:
            sets.append(f"{key}={value}")
    return [part for item in sets for part in ("--set", item)]


def _name(sweep: str) -> str:
    document = yaml.safe_load(Path(sweep).read_text())
    return str(document["metadata"]["name"])


def _arm(args: argparse.Namespace, pruner: str) -> dict[str, Any]:
    """Run (or finish) one arm's sweep; its best objective, trial-epochs and states."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    started = time.monotonic()
    command = [sys.executable, "-m", "argomlops.cli", "sweep", args.sweep, *_overrides(args, pruner)]
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{pruner}: argomlops sweep exited {done.returncode}")
    root = Path(args.artifacts) / pruner
    name = _name(args.sweep)
    storage = JournalStorage(JournalFileBackend(str(root / "sweeps" / name / "study.journal")))
    study = optuna.load_study(study_name=name, storage=storage)
    epochs = 0.0
    for trial in study.trials:
        run = root / trial.user_attrs["run_id"]
        steps = json.loads((run / "provenance.json").read_text())["stages"]["vqvae"]["steps"]
        per_epoch = yaml.safe_load((run / "run.yaml").read_text())["training"]["vqvae"]["stepsPerEpoch"]
        epochs += steps / per_epoch
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = min(complete, key=lambda t: t.value) if complete else None
    return {
        "pruner": pruner,
        "trials": len(study.trials),
        "pruned": sum(1 for t in study.trials if t.state.name == "PRUNED"),
        "trial_epochs": round(epochs, 2),
        "best": None if best is None else round(float(best.value), 6),
        "best_trial": None if best is None else best.number,
        "best_params": None if best is None else best.params,
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    args = _args()
    arms = [_arm(args, pruner) for pruner in args.pruners]
    base = next((arm for arm in arms if arm["pruner"] == "none"), arms[0])
    widths = {"pruner": -18, "trials": 6, "pruned": 6, "trial-epochs": 12, "saved": 6, "best val_mse": 12, "wall": 7}
    print(" ".join(name.ljust(-width) if width < 0 else name.rjust(width) for name, width in widths.items()))
    for arm in arms:
        arm["saved"] = round(1.0 - arm["trial_epochs"] / base["trial_epochs"], 3) if base["trial_epochs"] else None
        print(
            f"{arm['pruner']:<18} {arm['trials']:>6} {arm['pruned']:>6} {arm['trial_epochs']:>12.2f} "
            f"{100 * (arm['saved'] or 0):>5.0f}% {arm['best'] or float('nan'):>12.6f} {arm['wall_s']:>6.0f}s"
        )
    print(json.dumps({"sampler": args.sampler, "seed": args.seed, "arms": arms}))


if __name__ == "__main__":
    main()
