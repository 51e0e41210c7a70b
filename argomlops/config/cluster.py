"""The cluster's part of an MLOps spec: image, placement and an optional git source, beside the run config."""

from __future__ import annotations

from pydantic import Field, field_validator

from argomlops.config.base import Section
from argomlops.config.run import RunConfig


class GitSource(Section):
    """Optional user code: a public git repository and a command to run instead of the built-in trainer."""

    repo: str = Field(description="HTTPS URL of the git repository.")
    revision: str = Field("main", description="Branch, tag or commit to check out.")
    command: list[str] = Field(
        min_length=1,
        description="Command run in the checkout, e.g. [python, train.py, --config, /etc/argomlops/run.yaml].",
    )

    @field_validator("repo")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError(f"repo must be an https:// URL, got {value!r}")
        return value


class Placement(Section):
    """Where a run's pods go (the cluster's part of the spec)."""

    gpus: int = Field(1, ge=0, le=8, description="GPUs per training pod (0 = CPU only).")
    accelerator: str = Field(
        "nvidia-tesla-t4", pattern=r"^[a-z0-9-]+$", description="GKE accelerator type (node label value)."
    )
    spot: bool = Field(True, description="Run on spot/preemptible nodes; preemptions are retried.")
    max_preemptions: int = Field(10, ge=0, le=100, description="How many preemptions a stage may survive.")
    active_deadline_seconds: int = Field(
        86400, ge=60, description="Hard limit on one run's wall time, preemptions included."
    )


class MLOpsSpec(RunConfig):
    """The spec of an `MLOps` object: the run config plus the image and placement."""

    image: str = Field(
        "ghcr.io/argomlops/argomlops-trainer:0.1.0", min_length=1, description="Trainer container image."
    )
    placement: Placement = Field(default_factory=Placement, description="Node pool, GPUs and preemption budget.")
    git: GitSource | None = Field(None, description="Run this repository's command instead of the built-in trainer.")

    def run_config(self) -> RunConfig:
        """The script's part of the spec: what goes into the per-run ConfigMap."""
        fields = set(RunConfig.model_fields)
        return RunConfig.model_validate(self.model_dump(include=fields))


CLUSTER_FIELDS = frozenset(MLOpsSpec.model_fields) - frozenset(RunConfig.model_fields)
"""The spec's keys that are the cluster's part (snake_case names); a config holding one is a manifest spec."""
