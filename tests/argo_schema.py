"""Argo Workflows' published JSON schema (v4.1.2), read from ../shared/schemas when present, made strict.

The schema types IntOrString as string only although Argo accepts both (`limit: 10` in its own
examples), so that definition is widened. Kubernetes schemas leave objects open; here every definition
with listed properties is closed (`additionalProperties: false`), so a misspelt or removed field (such as
v3's singular `synchronization.semaphore`, gone in v4) fails validation instead of passing silently.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT.parent / "shared" / "schemas" / "argo-workflows-v4.1.2" / "schema.json"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


@functools.cache
def _definitions() -> dict[str, Any]:
    definitions: dict[str, Any] = json.loads(SCHEMA.read_text())["definitions"]
    for definition in definitions.values():
        if "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
    definitions[INT_OR_STRING] = {"type": ["string", "integer"]}
    return definitions


def validator(kind: str) -> jsonschema.Draft202012Validator:
    """A validator for one Argo kind (`Workflow`, `WorkflowTemplate`); skips the test without the schema."""
    if not SCHEMA.exists():
        pytest.skip(f"Argo's JSON schema is not at {SCHEMA}")
    root = {
        "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}",
        "definitions": copy.deepcopy(_definitions()),
    }
    return jsonschema.Draft202012Validator(root)


def problems(kind: str, document: dict[str, Any]) -> list[str]:
    """Every schema violation of `document`, one line each (`path: message`)."""
    found = validator(kind).iter_errors(document)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in found]
