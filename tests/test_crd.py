"""The MLOps CRD: generated from the config models, committed, structural, and a schema the examples pass.

`ARGOMLOPS_REGENERATE=1 pytest tests/test_crd.py` rewrites crds/mlops.yaml from the models.
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

from argomlops.config import MLOpsSpec
from argomlops.operator.crd import build_crd, crd_yaml, spec_schema

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "crds" / "mlops.yaml"
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if yaml.safe_load(p.read_text()).get("kind") == "MLOps")


def test_committed_crd_matches_the_models() -> None:
    generated = crd_yaml()
    if os.environ.get("ARGOMLOPS_REGENERATE"):
        COMMITTED.write_text(generated)
    assert COMMITTED.read_text() == generated, (
        "crds/mlops.yaml drifted from argomlops/config/: run ARGOMLOPS_REGENERATE=1 pytest tests/test_crd.py"
    )


def test_crd_validates_offline_with_kubernetes_validate_strict() -> None:
    kubernetes_validate.validate(yaml.safe_load(COMMITTED.read_text()), "1.37.0", strict=True)


def _structural_problems(node: dict[str, Any], path: str) -> list[str]:
    """Where a schema breaks the rules of structural schemas (apiextensions.k8s.io/v1)."""
    problems = []
    for banned in ("$ref", "anyOf", "oneOf", "allOf", "not", "definitions", "$defs", "title", "const"):
        if banned in node:
            problems.append(f"{path}: {banned}")
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties with additionalProperties")
    if "nullable" in node and "type" not in node:
        problems.append(f"{path}: nullable without type")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in node and not isinstance(node[key], bool):
            problems.append(f"{path}: {key} must be a boolean in OpenAPI v3.0")
    for name, sub in (node.get("properties") or {}).items():
        problems += _structural_problems(sub, f"{path}.{name}")
    if "items" in node:
        problems += _structural_problems(node["items"], f"{path}[]")
    return problems


def test_schema_is_structural_with_status_subresource_and_columns() -> None:
    crd = build_crd()
    (version,) = crd["spec"]["versions"]
    assert _structural_problems(version["schema"]["openAPIV3Schema"], "") == []
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Run",
        "Stage",
        "Epoch",
        "Progress",
        "Cost",
        "Budget",
        "Age",
    ]
    assert crd["spec"]["names"]["shortNames"] == ["mlo"]
    assert crd["metadata"]["name"] == "mlops.argomlops.dev"


def test_every_model_field_is_in_the_schema_with_its_description() -> None:
    schema = spec_schema()
    for name, info in MLOpsSpec.model_fields.items():
        alias = info.alias or name
        assert alias in schema["properties"], alias
        assert schema["properties"][alias]["description"].startswith(info.description or "-"), alias
    vqvae = schema["properties"]["models"]["properties"]["vqvae"]["properties"]
    assert vqvae["quantizer"]["enum"] == ["ema", "loss"]
    assert vqvae["decay"] == {**vqvae["decay"], "minimum": 0.0, "exclusiveMinimum": True, "maximum": 1.0}
    assert vqvae["latentChannels"]["nullable"] is True


def _as_json_schema(node: Any) -> Any:
    """OpenAPI v3.0 → JSON schema: `nullable` becomes a null type, boolean exclusive bounds become numbers."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items() if key != "nullable"}
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if out.get(key) is True:
            out[key] = out.pop(bound)
        elif out.get(key) is False:
            out.pop(key)
    if node.get("nullable"):
        out["type"] = [out["type"], "null"]
    if "properties" in node and isinstance(node.get("properties"), dict) and "type" in node:
        # What `kubectl --validate=strict` does with the CRD: unknown fields are errors.
        out["additionalProperties"] = node.get("additionalProperties", False)
    return out


def _crd_validator() -> jsonschema.Draft7Validator:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema = copy.deepcopy(schema)
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(_as_json_schema(schema))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd_schema(path: Path) -> None:
    errors = list(_crd_validator().iter_errors(yaml.safe_load(path.read_text())))
    assert errors == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_for_the_operator(path: Path) -> None:
    MLOpsSpec.model_validate(yaml.safe_load(path.read_text())["spec"])


def test_schema_rejects_what_the_models_reject() -> None:
    example = yaml.safe_load((ROOT / "examples" / "fafa.yaml").read_text())
    bad = copy.deepcopy(example)
    bad["spec"]["training"]["vqvae"]["epochs"] = 0
    bad["spec"]["placement"]["gpu"] = 1
    bad["spec"]["models"]["vqvae"]["quantizer"] = "kmeans"
    messages = sorted(e.message for e in _crd_validator().iter_errors(bad))
    assert len(messages) == 3, messages
    assert any("'gpu' was unexpected" in m for m in messages)
    assert any("kmeans" in m for m in messages)
    assert any("0 is less than the minimum of 1" in m for m in messages)


def _committed_status_schema() -> dict[str, Any]:
    crd = yaml.safe_load(COMMITTED.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


def test_committed_status_schema_is_the_status_model() -> None:
    """The drift test of the status: the committed schema is MLOpsStatus's, field for field."""
    from argomlops.operator.crd import status_schema
    from argomlops.operator.mlops_status import PHASES, MLOpsStatus, wire_name

    committed = _committed_status_schema()
    assert committed == status_schema()
    assert set(committed["properties"]) == {wire_name(name) for name in MLOpsStatus.model_fields}
    assert committed["properties"]["phase"]["enum"] == list(PHASES)


def test_every_status_the_operator_writes_passes_the_committed_schema() -> None:
    """A full status built by status_patch (no nulls: jsonschema does not know OpenAPI's nullable)."""
    from argomlops.operator.mlops_status import HistoryEntry, status_patch

    old = HistoryEntry(run_id="2026-11-26_10h00m00s", phase="Failed", generation=1, cost_usd=0.4)
    status = status_patch(
        phase="Running", run_phase="Running", message="m", errors=["a: b"], observed_generation=2,
        run_id="2026-11-27_09h01m09s", run_generation=2, workflow="w", config_map="c", artifacts="gs://b/r",
        stage="vqvae", epoch="3/10", progress="3/20", started_at="2026-11-27T09:01:09Z", finished_at="x",
        attempts=2, preemptions=1, gpu_hours=1.5, cost_usd=0.21, history=[old],
    )  # fmt: skip
    jsonschema.validate(status, _committed_status_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**status, "phase": "Sleeping"}, _committed_status_schema())


def test_git_credentials_are_refused_at_admission_by_the_models_own_rule() -> None:
    """A CEL rule on spec.git.repo, so a real API server never stores a token written into the URL."""
    import re

    from argomlops.config.cluster import CREDENTIALS_IN_URL

    crd = yaml.safe_load(COMMITTED.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    repo = spec["properties"]["git"]["properties"]["repo"]
    (rule,) = repo["x-kubernetes-validations"]
    assert rule["rule"] == f"!self.matches('{CREDENTIALS_IN_URL}')" and "Secret" in rule["message"]
    assert repo["maxLength"] <= 4096  # bounds the rule's cost, which the API server estimates from it
    # The expression means the same to CEL's RE2 and to Python (no construct where they differ).
    assert not re.search(r"\(\?|\\[bBdDsSwWAZz]|\{", CREDENTIALS_IN_URL)
    for refused in ("https://u:t@github.com/x", "https://t@github.com/x", "HTTP://u:t@h"):
        assert re.match(CREDENTIALS_IN_URL, refused), refused
    for allowed in ("https://github.com/x/y.git", "https://github.com/x/y@v2", "https://h/p?q=a@b"):
        assert not re.match(CREDENTIALS_IN_URL, allowed), allowed
