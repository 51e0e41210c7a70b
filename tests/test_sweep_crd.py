"""The MLOpsSweep CRD: generated from the sweep models, committed, structural, and a schema the example passes.

`ARGOMLOPS_REGENERATE=1 pytest tests/test_sweep_crd.py` rewrites crds/mlopssweep.yaml from the models.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from test_crd import _as_json_schema, _structural_problems

from argomlops.config.sweep import SweepSpec, validate_sweep
from argomlops.operator.crd import spec_schema
from argomlops.operator.sweep_crd import build_sweep_crd, sweep_crd_yaml, sweep_spec_schema, sweep_status_schema
from argomlops.operator.sweep_status import SWEEP_PHASES, SweepStatus, SweepTrial, sweep_status_patch

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "crds" / "mlopssweep.yaml"
EXAMPLE = ROOT / "examples" / "sweep.yaml"


def test_committed_crd_matches_the_models() -> None:
    generated = sweep_crd_yaml()
    if os.environ.get("ARGOMLOPS_REGENERATE"):
        COMMITTED.write_text(generated)
    assert COMMITTED.read_text() == generated, (
        "crds/mlopssweep.yaml drifted from the models: run ARGOMLOPS_REGENERATE=1 pytest tests/test_sweep_crd.py"
    )


def test_crd_validates_offline_and_is_structural_with_the_names_and_columns() -> None:
    crd = yaml.safe_load(COMMITTED.read_text())
    kubernetes_validate.validate(crd, "1.37.0", strict=True)
    (version,) = crd["spec"]["versions"]
    assert _structural_problems(version["schema"]["openAPIV3Schema"], "") == []
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase", "Trials", "Best", "Best Trial", "Cost", "Budget", "Age"
    ]  # fmt: skip
    assert [c["jsonPath"] for c in version["additionalPrinterColumns"][:4]] == [
        ".status.phase", ".status.progress", ".status.bestObjective", ".status.bestTrial"
    ]  # fmt: skip
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("MLOpsSweep", "mlopssweeps", ["mlsw"])
    assert crd["metadata"]["name"] == "mlopssweeps.argomlops.dev" and crd["spec"]["group"] == "argomlops.dev"


def test_the_template_is_the_mlops_spec_schema_and_every_field_is_described() -> None:
    schema = sweep_spec_schema()
    template = schema["properties"]["template"]
    assert template["properties"] == spec_schema()["properties"]
    for name, info in SweepSpec.model_fields.items():
        alias = info.alias or name
        assert schema["properties"][alias]["description"].startswith(info.description or "-"), alias
    parameter = schema["properties"]["parameters"]["items"]["properties"]
    assert set(parameter) == {"path", "choices", "float", "int"}
    assert parameter["choices"]["items"] == {"x-kubernetes-preserve-unknown-fields": True}


def _validator() -> jsonschema.Draft7Validator:
    schema = copy.deepcopy(build_sweep_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(_as_json_schema(schema))


def test_the_example_passes_the_schema_and_the_models_and_bad_values_fail_the_schema() -> None:
    example: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    assert list(_validator().iter_errors(example)) == []
    validate_sweep(example["spec"])
    bad = copy.deepcopy(example)
    bad["spec"]["sampler"] = "annealing"
    bad["spec"]["parameters"][0]["floats"] = {}
    bad["spec"]["parameters"][1]["choices"] = [16, [32, 64], "x"]  # any values are fine as choices
    messages = sorted(e.message for e in _validator().iter_errors(bad))
    assert len(messages) == 2 and any("annealing" in m for m in messages) and any("'floats'" in m for m in messages)


def test_the_status_schema_is_the_status_model_and_what_the_operator_writes_passes_it() -> None:
    committed = yaml.safe_load(COMMITTED.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    status_schema = committed["properties"]["status"]
    assert status_schema == sweep_status_schema()
    assert set(status_schema["properties"]) == {info.alias or n for n, info in SweepStatus.model_fields.items()}
    assert status_schema["properties"]["phase"]["enum"] == list(SWEEP_PHASES)
    trial = SweepTrial(
        number=0, name="demo-t0",
        parameters={"models.vqvae.encoderChannels": [16, 32], "training.vqvae.learningRate": 1e-3},
        state="Pruned", phase="Pruned", objective=0.1, epochs=2, cost_usd=0.01, message="pruned at epoch 2",
    )  # fmt: skip
    status = sweep_status_patch(
        phase="Running", message="m", observed_generation=1, search_digest="abc", progress="1/12", trials_done=1,
        trials_total=12, trials_running=2, best_trial="demo-t3", best_objective=0.01,
        best_parameters={"training.vqvae.learningRate": 1e-3}, cost_usd=0.5, budget=1.0, trials=[trial],
    )  # fmt: skip
    assert status["trials"][0]["costUSD"] == 0.01 and status["bestTrial"] == "demo-t3"
    jsonschema.validate(status, _as_json_schema(status_schema))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**status, "phase": "Sleeping"}, _as_json_schema(status_schema))
    with pytest.raises(TypeError, match="not MLOpsSweep status fields"):
        sweep_status_patch(bestTrail="x")
