"""`argomlops sweep SWEEP.yaml [--parallel N] [--set KEY=VALUE ...]`: the sweep of an MLOpsSweep on this machine.

SWEEP.yaml is an MLOpsSweep manifest (its `metadata.name` names the sweep) or a bare sweep spec (the
file's name does). `--set` works as in `train`, on the sweep spec: a key that is a field of the sweep
(`trials`, `parallelism`, `budget.maxCost`, `seed`, `pruner.type`, ...) sets that, any other key is a
path in the template (`--set artifacts=sweep-runs`, `--set training.vqvae.epochs=2`).

Everything lives under the template's artifacts root, a local folder:

    <artifacts>/<run-id>/                     each trial: an ordinary run folder (`argomlops runs` lists it)
    <artifacts>/sweeps/<name>/study.journal   Optuna's journal file storage: trials, parameters, values, states
    <artifacts>/sweeps/<name>/sweep.yaml      the spec the sweep started with
    <artifacts>/sweeps/<name>/trials/t0003.yaml   trial 3's run config (the template with its parameters)
    <artifacts>/sweeps/<name>/logs/t0003.log      trial 3's trainer output, appended to by each resume

Running the command again continues the study: trials that were running when it stopped (Ctrl-C,
SIGTERM, a crash) resume from their checkpoints under their run ids, then new ones start until the sweep
has its trials; a finished sweep prints its table and starts nothing. A rerun whose search differs
(parameters, objective, sampler, ...) is refused: that is another sweep, give it another name. The
budget, the number of trials and the parallelism may change between runs.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic.alias_generators import to_camel

from argomlops.config import ConfigError, load_raw
from argomlops.config.loading import parse_override, set_path
from argomlops.config.sweep import SweepSpec, sweep_name_problem, validate_sweep
from argomlops.errors import InputError

SWEEP_KIND = "MLOpsSweep"
SWEEP_FIELDS = frozenset(SweepSpec.model_fields) | {to_camel(name) for name in SweepSpec.model_fields}


def sweep_name_of(path: Path, raw: dict[str, Any]) -> str:
    """The sweep's name: the manifest's metadata.name, else the file's name made a Kubernetes name."""
    name = ((raw.get("metadata") or {}).get("name") if raw.get("kind") == SWEEP_KIND else None) or ""
    if not name:
        name = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-") or "sweep"
    return str(name)


def apply_sweep_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The sweep spec with each `--set` applied: to a sweep field when its first key is one, else to the template."""
    result: dict[str, Any] = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for text in overrides:
        path, value = parse_override(text)
        if path[0] not in SWEEP_FIELDS:
            path = ["template", *path]
        set_path(result, path, value, f"--set {text!r}")
    return result


def load_sweep(path: str, overrides: list[str]) -> tuple[str, SweepSpec]:
    """(name, spec) of a sweep file with its overrides; ConfigError with one line per problem."""
    document = load_raw(path)
    raw = document.get("spec") if document.get("kind") == SWEEP_KIND else document
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: an MLOpsSweep's spec must be a mapping"])
    name = sweep_name_of(Path(path), document)
    problem = sweep_name_problem(name)
    if problem is not None:
        raise ConfigError([f"{path}: {problem}"])
    spec = validate_sweep(apply_sweep_overrides(raw, overrides))
    if spec.template.artifacts.startswith("gs://"):
        raise ConfigError(
            [f"template.artifacts: argomlops sweep runs trials here, in a local folder, got {spec.template.artifacts}"]
        )
    return name, spec


def check_same_search(folder: Path, spec: SweepSpec) -> None:
    """Record the spec of a new sweep; refuse a rerun whose search is not the recorded one (InputError)."""
    stored = folder / "sweep.yaml"
    if stored.exists():
        before = SweepSpec.model_validate(yaml.safe_load(stored.read_text()))
        if before.search_digest() != spec.search_digest():
            raise InputError(
                f"{folder}: this sweep was started with another search ({stored}); only budget, trials and "
                "parallelism may change between runs: give the new search another name"
            )
    folder.mkdir(parents=True, exist_ok=True)
    written = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    stored.write_text(yaml.safe_dump(written, sort_keys=False))


def sweep_command(args: argparse.Namespace) -> int:
    """Run (or continue) the sweep of `args.sweep_file`; returns the exit code (143: stopped, rerun to continue)."""
    from argomlops.sweeps.local_runner import LocalSweep

    name, spec = load_sweep(args.sweep_file, list(args.overrides or []))
    if args.parallel is not None:
        if args.parallel < 1:
            raise ConfigError([f"--parallel: must be at least 1, got {args.parallel}"])
        spec = spec.model_copy(update={"parallelism": args.parallel})
    folder = Path(spec.template.artifacts) / "sweeps" / name
    check_same_search(folder, spec)
    return LocalSweep(name, spec, folder).run()
