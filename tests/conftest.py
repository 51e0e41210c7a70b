"""Fixtures shared by the test modules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
from chart_render import CHART, argo_validator_or_none, render
from gcs_emulator import GCSEmulator

# --- Google Cloud Storage: a real gcp-storage-emulator on loopback -------------------------------


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """The endpoint URL (http://127.0.0.1:PORT) of an in-memory GCS emulator kept for the whole session."""
    emulator = GCSEmulator().start()
    try:
        yield emulator.endpoint
    finally:
        emulator.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The name of a fresh, empty bucket; STORAGE_EMULATOR_HOST points at the emulator during the test."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "argomlops-test")
    from argomlops.trainer.gcs_client import gcs_client

    name = f"test-{uuid.uuid4().hex[:12]}"
    gcs_client().create_bucket(name)
    return name


# --- The local cache: ARGOMLOPS_CACHE with the demo data set built once ---------------------------


@pytest.fixture(scope="session")
def demo_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder for the whole session, holding the built-in demo set (built once, ~2 s)."""
    from argomlops.trainer.demo_data import demo_dir, ensure_demo

    root = tmp_path_factory.mktemp("argomlops-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARGOMLOPS_CACHE", str(root))
        ensure_demo(demo_dir())
    return root


@pytest.fixture
def argomlops_cache(demo_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ARGOMLOPS_CACHE set to the session's cache folder, where `builtin:demo` is already built."""
    monkeypatch.setenv("ARGOMLOPS_CACHE", str(demo_cache_dir))
    return demo_cache_dir


# --- Kubernetes: the test API server on loopback (tests/kube/) -----------------------------------

from kube.fixtures import kube, operator_runner  # noqa: E402, F401

# --- The Helm chart, rendered by Helm's own engine (chart_render.py) ------------------------------


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    """The chart, loaded once per test module."""
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def defaults(chart: helm.Chart) -> list[dict[str, Any]]:
    """Every object the chart renders with its default values."""
    return render(chart)


@pytest.fixture(scope="module")
def argo_validator() -> jsonschema.Draft202012Validator:
    """Argo's WorkflowTemplate schema; the test is skipped where the schema is not at hand."""
    validator = argo_validator_or_none()
    if validator is None:
        pytest.skip("Argo's JSON schema is not at hand (chart_render.ARGO_SCHEMA)")
    return validator
