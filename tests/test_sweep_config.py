"""The sweep spec: one line per bad field, parameters checked against the template they change, `--set` routing."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from argomlops.config import ConfigError, MLOpsSpec
from argomlops.config.loading import apply_values
from argomlops.config.sweep import SweepSpec, path_problem, sweep_name_problem, validate_sweep
from argomlops.sweeps.local import apply_sweep_overrides, load_sweep

ROOT = Path(__file__).resolve().parents[1]


def example() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "sweep.yaml").read_text())["spec"]
    return spec


def lines_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_sweep(raw)
    return caught.value.lines


def test_the_example_is_valid_and_its_trials_are_valid_mlops_specs() -> None:
    spec = validate_sweep(example())
    assert (spec.total_trials, spec.epochs, spec.objective.stage, spec.objective.key) == (12, 8, "vqvae", "val_mse")
    trial = apply_values(spec.template_raw(), {"models.vqvae.embeddingDim": 64, "training.vqvae.learningRate": 1e-3})
    parsed = MLOpsSpec.model_validate(trial)
    assert parsed.models.vqvae.embedding_dim == 64 and parsed.training.vqvae.learning_rate == 1e-3
    # Only what the template writes and the parameters set: defaults stay out of the trial's spec.
    assert "pixelcnn" not in trial["models"] and trial["training"]["vqvae"]["epochs"] == 8


@pytest.mark.parametrize(
    ("change", "lines"),
    [
        (
            {"parameters": [{"path": "models.vqvae.embedingDim", "choices": [16]}]},
            ["parameters[0].path: template.models.vqvae has no field embedingDim (it has: commitmentCost, "
             "deadCodeThreshold, decay, embeddingDim, encoderChannels, latentChannels, numEmbeddings, quantizer, "
             "residualBlocks, residualChannels)"],
        ),
        (
            {"parameters": [{"path": "training.vqvae.epochs.max", "int": {"low": 1, "high": 3}}]},
            ["parameters[0].path: template.training.vqvae.epochs is a value, not a section"],
        ),
        (
            {"parameters": [{"path": "data.imageSize", "choices": [64, 66]}]},
            ["parameters[0].choices[1]: data.imageSize=66 makes an invalid trial: data.imageSize: 66 is not "
             "divisible by 4 (2**len(models.vqvae.encoderChannels)) so the latent grid is whole"],
        ),
        (
            {"parameters": [{"path": "training.vqvae.learningRate", "float": {"low": 1e-4, "high": 2.0}}]},
            ["parameters[0].float.high: training.vqvae.learningRate=2.0 makes an invalid trial: "
             "training.vqvae.learningRate: Input should be less than or equal to 1 (got 2.0)"],
        ),
        (
            {"parameters": [{"path": "a", "choices": [1, 1]}, {"path": "b", "int": {"low": 3, "high": 2}},
                            {"path": "c"}, {"path": "d", "choices": [1], "int": {"low": 0, "high": 2}}]},
            ["parameters[0].choices: 1 given twice", "parameters[1].int.high: 2 must be above low (3); one value is a "
             "choice", "parameters[2].choices: give exactly one of choices, int or float (got none)",
             "parameters[3].choices: give exactly one of choices, int or float (got choices and int)"],
        ),
        (
            {"parameters": [{"path": "training.vqvae.learningRate", "float": {"low": 0, "high": 1, "log": True}}]},
            ["parameters[0].float.low: 0 must be above 0 on a log scale"],
        ),
        (
            {"parameters": [{"path": "x", "choices": [1]}, {"path": "x", "choices": [2]}]},
            ["parameters[1].path: x repeats parameters[0]"],
        ),
        ({"sampler": "grid"}, ["parameters[0]: the grid sampler takes choices only"]),
        (
            {"objective": {"metric": "pixelcnn.val_loss"}},
            ["objective.metric: stage pixelcnn is not in template.stages ['vqvae']"],
        ),
        (
            {"objective": {"metric": "evaluation.frechet.generated"}},
            ["objective.metric: evaluation figures need the pixelcnn stage with training.pixelcnn.evaluateCount "
             "above 0"],
        ),
        ({"pruner": {"type": "hyperband", "minEpochs": 9}}, ["pruner.minEpochs: 9 is more than the stage's 8 epochs"]),
        ({"objective": {"metric": "vqvae"}}, ["objective.metric: String should match pattern "
                                              "'^((vqvae|pixelcnn)\\.[A-Za-z0-9_]+|evaluation(\\.[A-Za-z0-9_]+)+)$' "
                                              "(got 'vqvae')"]),
        ({"trials": 0, "parallelism": 0, "sampler": "annealing"}, [
            "trials: Input should be greater than or equal to 1 (got 0)",
            "parallelism: Input should be greater than or equal to 1 (got 0)",
            "sampler: must be 'random', 'tpe' or 'grid' (got 'annealing')",
        ]),
        ({"template": {"training": {"vqvae": {"epochs": 0}}}, "extra": 1}, [
            "template.training.vqvae.epochs: Input should be greater than or equal to 1 (got 0)",
            "extra: unknown field (got 1)",
        ]),
    ],
)  # fmt: skip
def test_each_problem_is_one_line_naming_its_field(change: dict[str, Any], lines: list[str]) -> None:
    raw = copy.deepcopy(example())
    raw.update(change)
    assert lines_of(raw) == lines


def test_evaluation_objectives_take_no_pruner() -> None:
    raw = copy.deepcopy(example())
    raw["template"]["stages"] = ["vqvae", "pixelcnn"]
    raw["objective"] = {"metric": "evaluation.frechet.generated"}
    assert lines_of(raw) == ["pruner.type: an evaluation figure exists only at the end of a run: nothing to prune on"]
    raw["pruner"] = {"type": "none"}
    spec = validate_sweep(raw)
    assert not spec.objective.per_epoch and spec.epochs == spec.template.training.pixelcnn.epochs


def test_grid_runs_at_most_its_cells_and_the_search_digest_ignores_budget_trials_parallelism() -> None:
    raw = copy.deepcopy(example())
    raw["parameters"] = [
        {"path": "models.vqvae.embeddingDim", "choices": [16, 32]},
        {"path": "models.vqvae.encoderChannels", "choices": [[16, 32], [32, 64], [32, 64, 64]]},
    ]
    raw["sampler"] = "grid"
    spec = validate_sweep(raw)
    assert (spec.grid_size, spec.total_trials) == (6, 6)
    same = validate_sweep({**raw, "trials": 3, "parallelism": 3, "budget": {"maxCost": 9}})
    assert same.total_trials == 3 and same.search_digest() == spec.search_digest()
    other = validate_sweep({**raw, "seed": 1})
    assert other.search_digest() != spec.search_digest()


def test_paths_are_checked_against_the_mlops_spec_in_either_spelling() -> None:
    assert path_problem("training.vqvae.learningRate") is None
    assert path_problem("training.vqvae.learning_rate") is None
    assert path_problem("placement.gpus") is None
    assert path_problem("budget.maxCost") is None
    assert path_problem("modelz") is not None and path_problem("models.vqvae.quantizer.kind") is not None


def test_sweep_names_label_their_trials() -> None:
    assert sweep_name_problem("quick-lr") is None
    assert sweep_name_problem("Quick") == "metadata.name: lower-case letters, digits and '-' only, got 'Quick'"
    assert sweep_name_problem("x" * 51) == "metadata.name: at most 50 characters (it labels every trial), got 51"


def test_set_goes_to_the_sweep_for_its_fields_and_to_the_template_otherwise(tmp_path: Path) -> None:
    raw = apply_sweep_overrides(
        example(),
        ["trials=4", "budget.maxCost=2", "artifacts=elsewhere", "training.vqvae.epochs=3", "pruner.type=none"],
    )
    spec = SweepSpec.model_validate(raw)
    assert (spec.trials, spec.budget.max_cost, spec.pruner.type) == (4, 2.0, "none")
    assert spec.template.artifacts == "elsewhere" and spec.template.training.vqvae.epochs == 3
    assert spec.template.budget.max_cost is None  # budget is the sweep's: the trials' own stays unset

    name, loaded = load_sweep(str(ROOT / "examples" / "sweep.yaml"), ["trials=2"])
    assert name == "demo" and loaded.trials == 2
    bare = tmp_path / "My Sweep.yaml"
    bare.write_text(
        yaml.safe_dump({**example(), "template": {**example()["template"], "artifacts": "gs://bucket/runs"}})
    )
    with pytest.raises(ConfigError) as caught:
        load_sweep(str(bare), [])
    assert caught.value.lines == [
        "template.artifacts: argomlops sweep runs trials here, in a local folder, got gs://bucket/runs"
    ]
    bare.write_text(yaml.safe_dump(example()))
    assert load_sweep(str(bare), [])[0] == "my-sweep"


def test_validate_checks_a_sweep_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    from argomlops.cli import main

    assert main(["validate", str(ROOT / "examples" / "sweep.yaml")]) == 0
    assert capsys.readouterr().out == "ok: sweep demo, 12 trials of 3 parameters\n"
    assert main(["validate", str(ROOT / "examples" / "sweep.yaml"), "--set", "sampler=grid"]) == 2
    assert capsys.readouterr().err == "error: parameters[0]: the grid sampler takes choices only\n"
