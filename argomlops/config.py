"""The run configuration: one set of pydantic models shared by the trainer, the operator and the CRD.

The trainer reads `run.yaml` with `RunConfig`; the operator validates an `MLOps` object's spec with
`MLOpsSpec` (a `RunConfig` plus the cluster's part: image and placement); the CRD schema is generated
from the same models. This module must stay importable without TensorFlow or kopf.

Field names are snake_case in Python and camelCase in YAML (the Kubernetes convention); both spellings
are accepted on input, camelCase is written on output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

Stage = Literal["vqvae", "pixelcnn"]
STAGE_ORDER: tuple[Stage, ...] = ("vqvae", "pixelcnn")
_URI = re.compile(r"^(gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?|[^:]*)$")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, camelCase aliases, assignment validated."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        validate_assignment=True,
        frozen=False,
    )


def _check_uri(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    if "://" in value and not value.startswith("gs://"):
        raise ValueError(f"{what} must be a local path or gs://bucket/prefix, got {value!r}")
    if not _URI.match(value):
        raise ValueError(f"{what} is not a valid gs://bucket/prefix: {value!r}")
    return value.rstrip("/") if value not in ("/",) else value


class DataConfig(Section):
    """Where the images come from and how they are selected and shaped."""

    source: str = Field(
        "builtin:demo",
        description="Images: a local folder, a gs://bucket/prefix, or builtin:demo (crops of photos shipped "
        "with scikit-image; no download).",
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
    shuffle_buffer: int = Field(1024, ge=1, description="tf.data shuffle buffer, in images.")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value.startswith("builtin:"):
            if value != "builtin:demo":
                raise ValueError(f"unknown built-in data set {value!r}; allowed: builtin:demo")
            return value
        checked = _check_uri(value, "source")
        assert checked is not None
        return checked

    @model_validator(mode="after")
    def _tags_disjoint(self) -> DataConfig:
        both = sorted(set(self.include_tags) & set(self.exclude_tags))
        if both:
            raise ValueError(f"@includeTags: {both} also in excludeTags; no image could match")
        if self.metadata is None and (self.include_tags or self.exclude_tags):
            raise ValueError("@metadata: includeTags/excludeTags need a metadata file listing each image's tags")
        return self


class VQVAEConfig(Section):
    """Shape of the VQ-VAE (stage 1)."""

    encoder_channels: list[int] = Field(
        default_factory=lambda: [32, 64],
        min_length=1,
        max_length=6,
        description="Filters of each stride-2 convolution of the encoder; the decoder mirrors them. "
        "The latent grid is imageSize / 2**len(encoderChannels) on a side.",
    )
    residual_blocks: int = Field(2, ge=0, le=16, description="Residual blocks after the strided convolutions.")
    residual_channels: int = Field(32, ge=1, description="Hidden filters inside each residual block.")
    embedding_dim: int = Field(32, ge=1, description="Size D of each codebook vector.")
    num_embeddings: int = Field(128, ge=2, le=65536, description="Number K of codebook vectors.")
    latent_channels: int | None = Field(
        None,
        ge=1,
        description="Encoder output channels; a multiple k of embeddingDim, giving k codes per latent "
        "position (default: embeddingDim, k = 1).",
    )
    quantizer: Literal["ema", "loss"] = Field(
        "ema", description="Codebook update: exponential moving averages (ema) or the codebook loss (loss)."
    )
    commitment_cost: float = Field(0.25, ge=0.0, description="Weight beta of the commitment loss.")
    decay: float = Field(0.99, gt=0.0, lt=1.0, description="EMA decay of the codebook (quantizer: ema).")
    dead_code_threshold: float = Field(
        0.01,
        ge=0.0,
        description="A code whose EMA usage falls below this many assignments per step is restarted on a "
        "random encoder output (quantizer: ema); 0 disables restarts.",
    )

    @property
    def latent(self) -> int:
        """Encoder output channels: latentChannels, or embeddingDim when unset."""
        return self.latent_channels or self.embedding_dim

    @property
    def codes_per_position(self) -> int:
        """k: how many codebook indices each latent position holds."""
        return self.latent // self.embedding_dim

    @model_validator(mode="after")
    def _latent_multiple(self) -> VQVAEConfig:
        latent = self.latent
        if latent % self.embedding_dim:
            raise ValueError(
                f"@latentChannels: {latent} is not a multiple of embeddingDim ({self.embedding_dim}): "
                f"each latent position is split into latentChannels/embeddingDim codes; "
                f"use e.g. {self.embedding_dim} or {2 * self.embedding_dim}"
            )
        return self


class PixelCNNConfig(Section):
    """Shape of the gated PixelCNN prior over the VQ-VAE codes (stage 2)."""

    filters: int = Field(64, ge=4, description="Channels of the vertical and horizontal stacks.")
    layers: int = Field(6, ge=1, le=40, description="Gated layers after the first masked convolution.")
    kernel_size: int = Field(3, ge=3, le=9, description="Odd kernel size of the gated layers.")
    embedding_dim: int = Field(32, ge=1, description="Size of the learned embedding of each input code.")
    condition_on_tags: list[str] = Field(
        default_factory=list,
        description="Tags to condition on (one-hot of these, from the metadata); empty = unconditional.",
    )

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernelSize must be odd, got {value}")
        return value


class ModelsConfig(Section):
    """The two models of a run."""

    vqvae: VQVAEConfig = Field(default_factory=VQVAEConfig, description="Stage 1: the VQ-VAE.")
    pixelcnn: PixelCNNConfig = Field(default_factory=PixelCNNConfig, description="Stage 2: the PixelCNN prior.")


class StageTraining(Section):
    """Optimisation and artifact cadence of one stage."""

    epochs: int = Field(10, ge=1, le=100000, description="Epochs to train.")
    batch_size: int = Field(32, ge=1, le=4096, description="Images (or code grids) per step.")
    learning_rate: float = Field(3e-4, gt=0.0, le=1.0, description="Adam learning rate.")
    steps_per_epoch: int | None = Field(
        None, ge=1, description="Steps per epoch (default: one pass over the training split)."
    )
    checkpoint_every: int = Field(1, ge=1, description="Write a checkpoint every this many epochs.")
    images_every: int = Field(
        5,
        ge=0,
        description="Write a reconstruction grid (vqvae) or samples (pixelcnn) every this many epochs; "
        "0 = only at the end of training.",
    )


class PixelCNNTraining(StageTraining):
    """Stage 2 training, plus sampling settings."""

    images_every: int = Field(0, ge=0, description="Write samples every this many epochs; 0 = only at the end.")
    sample_count: int = Field(16, ge=1, le=1024, description="Generated images in each samples grid.")
    temperature: float = Field(1.0, gt=0.0, le=10.0, description="Softmax temperature of sampling.")


class TrainingConfig(Section):
    """How both stages train."""

    seed: int = Field(0, ge=0, description="Seed of weights, shuffling and sampling.")
    mixed_precision: bool = Field(False, description="Train in mixed_float16 (worth it on T4 GPUs).")
    jit_compile: bool = Field(False, description="Compile train steps with XLA.")
    vqvae: StageTraining = Field(default_factory=StageTraining, description="Stage 1 training.")
    pixelcnn: PixelCNNTraining = Field(default_factory=PixelCNNTraining, description="Stage 2 training.")


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
        checked = _check_uri(value, "artifacts")
        assert checked is not None
        return checked

    @field_validator("resume_from")
    @classmethod
    def _resume_from(cls, value: str | None) -> str | None:
        return _check_uri(value, "resumeFrom")

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
        factor = 2 ** len(self.models.vqvae.encoder_channels)
        if self.data.image_size % factor:
            raise ValueError(
                f"@data.imageSize: {self.data.image_size} is not divisible by {factor} "
                f"(2**len(models.vqvae.encoderChannels)) so the latent grid is whole"
            )
        return self

    def to_yaml(self) -> str:
        """The config as YAML with camelCase keys, every default written out (the resolved config)."""
        return yaml.safe_dump(self.model_dump(mode="json", by_alias=True), sort_keys=False)


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


class ConfigError(ValueError):
    """A config that cannot be used; `lines` has one human-readable line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _path_of(loc: tuple[int | str, ...]) -> str:
    """The dotted camelCase path of an error location."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item.startswith("function-"):  # function-after, function-before: validator steps, not fields
            continue
        else:
            parts.append(to_camel(item) if "_" in item else item)
    return ".".join(parts) or "(top level)"


def error_lines(error: ValidationError) -> list[str]:
    """One line per bad field: `path: what is wrong (got value)`."""
    lines = []
    for item in error.errors(include_url=False):
        path = _path_of(tuple(item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        # Cross-field validators name the field they blame as "@field: ..." (relative to their section).
        if message.startswith("@"):
            field, _, message = message[1:].partition(": ")
            path = field if path == "(top level)" else f"{path}.{field}"
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "literal_error":
            message = message.replace("Input should be", "must be")
        got = item.get("input")
        # Validators that already quote the value need no second copy of it.
        quiet = isinstance(got, dict) or item["type"] == "missing" or repr(got) in message
        shown = "" if quiet else f" (got {got!r})"
        lines.append(f"{path}: {message}{shown}")
    return lines


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `training.vqvae.epochs=3` into a key path and a YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"--set {text!r}: expected KEY=VALUE, e.g. training.vqvae.epochs=3"])
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of a raw config dict with each `a.b.c=value` override applied (camel or snake keys)."""
    result: dict[str, Any] = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            existing = next((k for k in (part, to_camel(part)) if k in node), part)
            child = node.setdefault(existing, {})
            if not isinstance(child, dict):
                raise ConfigError([f"--set {text!r}: {existing} is not a section"])
            node = child
        leaf = next((k for k in (path[-1], to_camel(path[-1])) if k in node), path[-1])
        node[leaf] = value
    return result


def load_raw(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; a missing file or bad YAML is a ConfigError."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config ({exc.strerror})"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})"]) from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: a run config is a mapping of sections, got {type(raw).__name__}"])
    # An MLOps manifest can be validated directly: its spec is the config.
    if raw.get("kind") == "MLOps" and isinstance(raw.get("spec"), dict):
        return dict(raw["spec"])
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load, override and validate a run config; raises ConfigError with one line per problem."""
    raw = load_raw(path) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    cluster_keys = set(MLOpsSpec.model_fields) - set(RunConfig.model_fields)
    cluster_keys |= {to_camel(k) for k in cluster_keys}
    model: type[RunConfig] = MLOpsSpec if cluster_keys & set(raw) else RunConfig
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(error_lines(exc)) from exc
    return config.run_config() if isinstance(config, MLOpsSpec) else config
