"""`RunConfig`: everything the trainer needs for one run (the per-run ConfigMap's run.yaml holds exactly this)."""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator

from argomlops.config.base import Section, blame, check_uri
from argomlops.config.data import DataConfig
from argomlops.config.models import ModelsConfig
from argomlops.config.training import TrainingConfig

Stage = Literal["vqvae", "pixelcnn"]
STAGE_ORDER: tuple[Stage, ...] = ("vqvae", "pixelcnn")
"""Every stage, in the order a run takes them."""


class RunConfig(Section):
    """Everything the trainer needs for one run; the per-run ConfigMap's run.yaml holds exactly this."""

    artifacts: str = Field(
        "runs",
        description="Where runs are written: a local folder or gs://bucket/prefix; a run writes <artifacts>/<run-id>/.",
    )
    stages: list[Stage] = Field(
        default_factory=lambda: list(STAGE_ORDER),
        min_length=1,
        description="Stages to run, in order: vqvae, pixelcnn.",
    )
    resume_from: str | None = Field(
        None, description="URI of an earlier run whose weights start this one (recorded as its parent)."
    )
    data: DataConfig = Field(default_factory=DataConfig, description="The images.")
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="The models.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Training of each stage.")

    @field_validator("artifacts")
    @classmethod
    def _artifacts(cls, value: str) -> str:
        checked = check_uri(value, "artifacts")
        assert checked is not None
        return checked

    @field_validator("resume_from")
    @classmethod
    def _resume_from(cls, value: str | None) -> str | None:
        return check_uri(value, "resumeFrom")

    @field_validator("stages")
    @classmethod
    def _stages_ordered(cls, value: list[Stage]) -> list[Stage]:
        if len(set(value)) != len(value):
            raise ValueError(f"stages must not repeat, got {value}")
        if value != [s for s in STAGE_ORDER if s in value]:
            raise ValueError(f"stages run in the order {list(STAGE_ORDER)}, got {value}")
        return value

    @model_validator(mode="after")
    def _grid_fits(self) -> RunConfig:
        factor = self.models.vqvae.downsampling
        if self.data.image_size % factor:
            raise blame(
                "data.imageSize",
                f"{self.data.image_size} is not divisible by {factor} "
                f"(2**len(models.vqvae.encoderChannels)) so the latent grid is whole",
            )
        return self

    def to_yaml(self) -> str:
        """The config as YAML with camelCase keys, every default written out (the resolved config)."""
        return yaml.safe_dump(self.model_dump(mode="json", by_alias=True), sort_keys=False)
