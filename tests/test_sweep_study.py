"""The search: Optuna's samplers and pruners from a sweep spec, a study rebuilt from records, objectives from files.

The property everything else rests on: a study rebuilt from the trials' records suggests and prunes
exactly as the study that made them (a restarted operator, a resumed laptop sweep), and a fixed seed
suggests the same parameters.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from argomlops.config.sweep import SweepSpec, validate_sweep
from argomlops.sweeps import study as search
from argomlops.sweeps.objective import ObjectiveMissing, epoch_values, final_value
from argomlops.sweeps.table import TrialRow, format_table, summary_line

ROOT = Path(__file__).resolve().parents[1]


def spec_of(**change: Any) -> SweepSpec:
    raw: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "sweep.yaml").read_text())["spec"]
    raw = copy.deepcopy(raw)
    raw.update(change)
    return validate_sweep(raw)


GRID = [
    {"path": "training.vqvae.learningRate", "choices": [1e-4, 1e-3, 3e-3]},
    {"path": "models.vqvae.encoderChannels", "choices": [[16, 32], [32, 64]]},
]
CASES = {
    "tpe-median": {"startupTrials": 3, "pruner": {"type": "median", "startupTrials": 1, "warmupEpochs": 1}},
    "random-asha": {"sampler": "random", "pruner": {"type": "successiveHalving", "minEpochs": 1}},
    "grid-hyperband": {"sampler": "grid", "parameters": GRID, "pruner": {"type": "hyperband", "minEpochs": 1}},
}


def curve(rng: random.Random, epochs: int) -> dict[int, float]:
    start = rng.uniform(0.01, 0.1)
    return {epoch: start / epoch**0.5 for epoch in range(1, epochs + 1)}


def live_sweep(spec: SweepSpec, storage: Any, trials: int) -> tuple[list[dict[str, Any]], list[search.TrialRecord]]:
    """A sweep run start to end in one process on a persistent study; each trial rebuilt-checked on the way."""
    from optuna.trial import TrialState

    study = search.new_study(spec, "demo", storage)
    rng = random.Random(7)
    asked, records = [], []
    for _ in range(trials):
        rebuilt = search.rebuild(spec, "demo", records)
        number, params, attrs = search.suggest(study, spec)
        assert search.suggest(rebuilt, spec) == (number, params, attrs)  # what a restarted process asks
        asked.append(params)
        values = curve(rng, spec.epochs)
        replay = search.rebuild(spec, "demo", [*records, search.TrialRecord(number, params, attrs=attrs)])
        pruned = None
        for last in range(1, spec.epochs + 1):  # epoch by epoch, as a live trial reports
            seen = {epoch: value for epoch, value in values.items() if epoch <= last}
            pruned = search.report(study, number, seen, spec.epochs)
            assert search.report(replay, number, seen, spec.epochs) == pruned  # what a restarted process decides
            if pruned is not None:
                break
        if pruned is None:
            study.tell(number, values[spec.epochs])
        else:
            study.tell(number, state=TrialState.PRUNED)
        records.append(search.record_of(study, spec, number, "complete" if pruned is None else "pruned"))
    return asked, records


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_rebuilt_study_suggests_and_prunes_as_the_one_that_made_the_trials(case: str, tmp_path: Path) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    spec = spec_of(**CASES[case])
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    asked, records = live_sweep(spec, storage, 6)
    assert len({json.dumps(p, sort_keys=True) for p in asked}) == 6  # no configuration twice
    assert any(r.state == "pruned" for r in records) and any(r.state == "complete" for r in records)
    # The same seed, again from nothing: the same parameters (the curves are seeded too).
    again, _ = live_sweep(spec, JournalStorage(JournalFileBackend(str(tmp_path / "again.journal"))), 6)
    assert again == asked
    # A record goes through its annotation unchanged.
    for record in records:
        assert search.TrialRecord.from_json(record.number, record.params, record.progress_json()) == record


def test_grid_gives_trial_n_the_nth_cell_of_the_seeds_order_and_lists_come_back_as_lists() -> None:
    spec = spec_of(sampler="grid", parameters=GRID, trials=6)
    study = search.rebuild(spec, "g", [])
    cells = [search.suggest(study, spec)[1] for _ in range(6)]
    assert len({json.dumps(c, sort_keys=True) for c in cells}) == 6
    assert {tuple(c["models.vqvae.encoderChannels"]) for c in cells} == {(16, 32), (32, 64)}
    other = spec_of(sampler="grid", parameters=GRID, trials=6, seed=5)
    study = search.rebuild(other, "g", [])
    assert [search.suggest(study, other)[1] for _ in range(6)] != cells


def test_random_trials_depend_on_the_seed_and_number_only() -> None:
    spec = spec_of(sampler="random")
    first = search.suggest(search.rebuild(spec, "r", []), spec)
    finished = [search.TrialRecord(0, first[1], "complete", {8: 0.01}, 0.01)]
    second_after_good = search.suggest(search.rebuild(spec, "r", finished), spec)
    finished[0].value = 0.5
    assert search.suggest(search.rebuild(spec, "r", finished), spec) == second_after_good
    assert second_after_good[1] != first[1]
    assert search.derived_seed(0, 1) != search.derived_seed(1, 1) != search.derived_seed(0, 2)


def test_missing_numbers_are_failed_trials_and_best_is_the_lowest_complete() -> None:
    spec = spec_of(sampler="random")
    params = search.suggest(search.rebuild(spec, "b", []), spec)[1]
    records = [
        search.TrialRecord(0, params, "complete", {8: 0.02}, 0.02),
        search.TrialRecord(2, params, "pruned", {1: 0.001}),
        search.TrialRecord(3, params, "complete", {8: 0.01}, 0.01),
        search.TrialRecord(4, params, "running", {1: 0.5}),
    ]
    study = search.rebuild(spec, "b", records)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "PRUNED", "COMPLETE", "RUNNING"]
    assert search.best_number(study) == 3
    maximize = spec_of(sampler="random", objective={"metric": "vqvae.val_psnr", "direction": "maximize"})
    assert search.best_number(search.rebuild(maximize, "b", records)) == 0


def test_objective_values_by_epoch_and_at_the_end() -> None:
    lines = [
        {"stage": "vqvae", "epoch": 1, "step": 40, "val_mse": 0.05, "train_mse": 0.06},
        {"stage": "vqvae", "epoch": 2, "step": 80, "val_mse": None},
        {"stage": "vqvae", "epoch": 2, "step": 80, "val_mse": 0.03},  # a resumed run logs the redone epoch again
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"stage": "vqvae", "epo'  # a line being written
    spec = spec_of()
    assert epoch_values(text, "val_mse") == {1: 0.05, 2: 0.03}
    with pytest.raises(ObjectiveMissing, match="ends at epoch 2, not the stage's last \\(8\\)"):
        final_value(spec.objective, text, 8)
    assert final_value(spec.objective, text, 2) == 0.03
    with pytest.raises(ObjectiveMissing, match="has no val_psnr \\(its metrics: train_mse, val_mse\\)"):
        final_value(spec_of(objective={"metric": "vqvae.val_psnr"}).objective, text, 2)
    with pytest.raises(ObjectiveMissing, match=r"the run has no vqvae/metrics\.jsonl"):
        final_value(spec.objective, None, 2)
    evaluation = spec_of(
        template={**spec.template_raw(), "stages": ["vqvae", "pixelcnn"]},
        objective={"metric": "evaluation.frechet.generated"},
        pruner={"type": "none"},
    ).objective
    assert final_value(evaluation, json.dumps({"frechet": {"generated": 12.5}}), 8) == 12.5
    with pytest.raises(ObjectiveMissing, match=r"evaluation\.json has no number at frechet\.generated"):
        final_value(evaluation, json.dumps({"frechet": {}}), 8)


def test_the_table_marks_the_best_and_sums_up() -> None:
    spec = spec_of()
    rows = [
        TrialRow(0, "complete", {"training.vqvae.learningRate": 0.00123, "models.vqvae.embeddingDim": 32,
                                 "models.vqvae.numEmbeddings": 64}, 0.0123, 0.0123, 8, 0.001, "2026-12-01_10h00m00s"),
        TrialRow(1, "pruned", {"training.vqvae.learningRate": 0.0003, "models.vqvae.embeddingDim": 16,
                               "models.vqvae.numEmbeddings": 256}, None, 0.09, 3, 0.0004, "2026-12-01_10h01m00s",
                 "pruned at epoch 3"),
    ]  # fmt: skip
    lines = format_table(spec, rows, best=0)
    assert lines[0].split() == ["trial", "state", "learningRate", "embeddingDim", "numEmbeddings", "vqvae.val_mse",
                                "epochs", "cost", "run"]  # fmt: skip
    assert lines[1].split()[:6] == ["*0", "complete", "0.00123", "32", "64", "0.0123"]
    assert lines[2].split()[:7] == ["1", "pruned", "0.0003", "16", "256", "(0.09)", "3/8"]
    assert lines[2].endswith("pruned at epoch 3")
    assert summary_line(spec, rows, 0, 0.0014) == (
        "2/12 trials done (1 pruned); best trial 0: vqvae.val_mse 0.0123; cost 0.0014 of 1"
    )


def test_a_trial_that_reported_its_last_epoch_is_never_pruned() -> None:
    """The median rule would prune a worse trial at any epoch; at its last one it has nothing left to save."""
    from optuna.trial import TrialState

    spec = spec_of(sampler="random", pruner={"type": "median", "startupTrials": 1, "warmupEpochs": 0})
    study = search.rebuild(spec, "demo", [])
    best, _, _ = search.suggest(study, spec)
    assert search.report(study, best, {e: 0.1 / e for e in range(1, spec.epochs + 1)}, spec.epochs) is None
    study.tell(best, 0.1 / spec.epochs)
    worse, _, _ = search.suggest(study, spec)
    last = {e: 1.0 / e for e in range(1, spec.epochs + 1)}
    # Read all at once (as after the better trial completed): worse at every epoch, yet not pruned.
    assert search.report(study, worse, last, spec.epochs) is None
    assert study.trials[worse].state == TrialState.RUNNING
    # The same values one epoch short of the end: pruned at its first epoch.
    third, _, _ = search.suggest(study, spec)
    assert search.report(study, third, {1: 1.0}, spec.epochs) == 1
