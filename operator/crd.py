"""The MLOps CustomResourceDefinition, generated from the pydantic models (the one source of truth).

The spec schema comes from `MLOpsSpec` (argomlops/config/), the status schema from `MLOpsStatus`
(mlops_status.py). `python -m argomlops.operator.crd > crds/mlops.yaml` writes it; tests/test_crd.py fails when the
committed file drifts from the models (`ARGOMLOPS_REGENERATE=1 pytest tests/test_crd.py` rewrites it).

The spec schema is `MLOpsSpec`'s JSON schema made structural (what apiextensions.k8s.io/v1 demands):
`$ref`s inlined, `anyOf [X, null]` turned into `X` + `nullable`, draft-2020 `exclusiveMinimum: n` turned
into OpenAPI 3.0's `minimum: n, exclusiveMinimum: true`, titles dropped, defaults moved into the
description (the operator applies defaults; the API server would otherwise write every default into
each stored spec). Unknown fields are pruned by the API server and rejected by `kubectl --validate=strict`.
Cross-field rules (e.g. imageSize divisible by 2**len(encoderChannels)) stay in the operator, which
reports them in status.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel

from argomlops.config import MLOpsSpec
from argomlops.operator.client import GROUP, KIND, PLURAL, VERSION
from argomlops.operator.mlops_status import MLOpsStatus, wire_name

SHORT_NAMES = ["mlo"]


def _status_path(field: str) -> str:
    return f".status.{wire_name(field)}"


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": _status_path("phase")},
    {"name": "Run", "type": "string", "jsonPath": _status_path("run_id")},
    {"name": "Stage", "type": "string", "jsonPath": _status_path("stage")},
    {"name": "Epoch", "type": "string", "jsonPath": _status_path("epoch")},
    {"name": "Progress", "type": "string", "jsonPath": _status_path("percent"), "description": "Of the stage's steps"},
    {"name": "Cost", "type": "number", "jsonPath": _status_path("cost_usd"), "description": "Estimated USD so far"},
    {"name": "Budget", "type": "number", "jsonPath": _status_path("budget"), "description": "The run's maxCost, USD"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """One JSON-schema node (pydantic's output) as a structural OpenAPI v3 schema node."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    out: dict[str, Any] = {}
    variants = node.get("anyOf")
    if variants is not None:
        kept = [v for v in variants if v.get("type") != "null"]
        if len(kept) != 1:
            raise ValueError(f"cannot express anyOf {variants} structurally")
        out.update(_structural(kept[0], defs))
        if len(kept) < len(variants):
            out["nullable"] = True
    for key, value in node.items():
        if key in ("anyOf", "title", "$defs", "default", "additionalProperties"):
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "default" in node and node["default"] is not None and "description" in out:
        out["description"] = f"{out['description']} Default: {json.dumps(node['default'])}."
    return out


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural openAPIV3Schema of a pydantic model (by alias), described by its docstring's first line."""
    schema = model.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    result: dict[str, Any] = _structural(schema, defs)
    result["description"] = (model.__doc__ or "").strip().splitlines()[0]
    return result


def spec_schema() -> dict[str, Any]:
    """The openAPIV3Schema of `spec`, from `MLOpsSpec`."""
    result = model_schema(MLOpsSpec)
    result["description"] = (MLOpsSpec.__doc__ or "").strip()
    return result


def status_schema() -> dict[str, Any]:
    """The openAPIV3Schema of `status`, from `MLOpsStatus`."""
    return model_schema(MLOpsStatus)


def build_crd() -> dict[str, Any]:
    """The `apiextensions.k8s.io/v1` CRD of MLOps objects."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": PLURAL,
                "shortNames": SHORT_NAMES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A training run on Kubernetes: the run config plus where it runs. "
                            "Every spec generation starts one run.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML committed in crds/mlops.yaml."""
    header = "# Generated by `python -m argomlops.operator.crd` from argomlops/config/; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    print(crd_yaml(), end="")
