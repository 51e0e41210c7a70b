"""`data`: where the images come from and how they are selected and shaped."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from argomlops.config.base import Section, blame, check_uri

BUILTIN_SOURCES = ("builtin:demo", "builtin:figures")
"""Data sets that ship with argomlops (no download); `source: builtin:<name>`."""


class DataConfig(Section):
    """Where the images come from and how they are selected and shaped."""

    source: str = Field(
        "builtin:demo",
        description="Images: a local folder, a gs://bucket/prefix, builtin:demo (crops of photos shipped "
        "with scikit-image) or builtin:figures (3000 drawn human figures at imageSize, tagged by pose: standing, "
        "sitting, walking, arms-raised, lying); built-in sets need no download.",
    )
    metadata: str | None = Field(
        None,
        description="Optional JSONL or CSV file (relative to source, or a full path/URI) with one row per "
        "image: `file` and `tags` (a list, or a `;`-separated string).",
    )
    include_tags: list[str] = Field(
        default_factory=list, description="Keep only images carrying at least one of these tags."
    )
    exclude_tags: list[str] = Field(default_factory=list, description="Drop images carrying any of these tags.")
    image_size: int = Field(
        64, ge=8, le=1024, description="Side in pixels after padding to square (never stretched) and resizing."
    )
    validation_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of images held out for validation, chosen by file-name hash."
    )
    cache_dir: str | None = Field(
        None,
        description="Local folder where a gs:// source is synced once before training "
        "(default: ~/.cache/argomlops/data).",
    )

    @property
    def builtin(self) -> bool:
        """Whether the source is one of the built-in data sets."""
        return self.source in BUILTIN_SOURCES

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value.startswith("builtin:"):
            if value not in BUILTIN_SOURCES:
                raise ValueError(f"unknown built-in data set {value!r}; allowed: {', '.join(BUILTIN_SOURCES)}")
            return value
        checked = check_uri(value, "source")
        assert checked is not None
        return checked

    @model_validator(mode="after")
    def _tags_disjoint(self) -> DataConfig:
        both = sorted(set(self.include_tags) & set(self.exclude_tags))
        if both:
            raise blame("includeTags", f"{both} also in excludeTags; no image could match")
        if self.metadata is None and not self.builtin and (self.include_tags or self.exclude_tags):
            raise blame("metadata", "includeTags/excludeTags need a metadata file listing each image's tags")
        return self
