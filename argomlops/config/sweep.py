"""The spec of an `MLOpsSweep`: one template run, the config paths a search sets in it, the objective, the limits.

The same spec runs in the cluster (the operator makes one MLOps object per trial) and on a laptop
(`argomlops sweep`, one `argomlops train` process per trial). Each trial's spec is the template with the
suggested value of every parameter set at its path (`loading.apply_values`, what `--set` does).

`validate_sweep` checks a raw spec in two steps, one line per problem: the models below (their own
fields and the rules across them), then each parameter against the template it changes: the path must
name a field of the run config, and every choice (or both ends of a range) must give a valid trial.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, model_validator

from argomlops.config.base import Section, blame
from argomlops.config.cluster import MLOpsSpec
from argomlops.config.errors import ConfigError, error_lines
from argomlops.config.loading import apply_values

METRIC_PATTERN = r"^((vqvae|pixelcnn)\.[A-Za-z0-9_]+|evaluation(\.[A-Za-z0-9_]+)+)$"
PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
Sampler = Literal["random", "tpe", "grid"]
PrunerType = Literal["none", "median", "successiveHalving", "hyperband"]
SEARCH_FIXED_ONCE_STARTED = ("budget", "trials", "parallelism")
"""The fields a sweep may change once it has trials; the rest is its search (`search_digest`)."""


class FloatRange(Section):
    """Floats from low to high: uniform, or log-uniform with log."""

    low: float = Field(allow_inf_nan=False, description="Smallest value.")
    high: float = Field(allow_inf_nan=False, description="Largest value.")
    log: bool = Field(False, description="Sample on a log scale (low must be above 0).")
    step: float | None = Field(None, gt=0, allow_inf_nan=False, description="Only low + k x step (not with log).")

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low >= self.high:
            raise blame("high", f"{self.high:g} must be above low ({self.low:g})")
        if self.log and self.low <= 0:
            raise blame("low", f"{self.low:g} must be above 0 on a log scale")
        if self.log and self.step is not None:
            raise blame("step", "a log scale takes no step")
        return self


class IntRange(Section):
    """Integers from low to high (both included): uniform, or log-uniform with log."""

    low: int = Field(description="Smallest value.")
    high: int = Field(description="Largest value.")
    log: bool = Field(False, description="Sample on a log scale (low must be at least 1).")
    step: int = Field(1, ge=1, description="Only low + k x step (1 with log).")

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low >= self.high:
            raise blame("high", f"{self.high} must be above low ({self.low}); one value is a choice")
        if self.log and self.low < 1:
            raise blame("low", f"{self.low} must be at least 1 on a log scale")
        if self.log and self.step != 1:
            raise blame("step", "a log scale takes no step")
        return self


class Parameter(Section):
    """One config path of the trial's spec and the values to try: choices, or an int or float range."""

    path: str = Field(
        pattern=PATH_PATTERN,
        description="Config path in the template, as --set spells it: training.vqvae.learningRate, "
        "models.vqvae.embeddingDim, ...",
    )
    choices: list[Any] | None = Field(
        None,
        min_length=1,
        description="Values to choose from: numbers, strings, booleans or lists (e.g. encoderChannels).",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    float_range: FloatRange | None = Field(None, alias="float", description="A float range.")
    int_range: IntRange | None = Field(None, alias="int", description="An integer range.")

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        given = [name for name, value in self.kinds().items() if value is not None]
        if len(given) != 1:
            what = f"got {' and '.join(given)}" if given else "got none"
            raise blame("choices", f"give exactly one of choices, int or float ({what})")
        if self.choices is not None:
            encoded = [encode_choice(choice) for choice in self.choices]
            repeated = sorted({repr(c) for c in encoded if encoded.count(c) > 1})
            if repeated:
                raise blame("choices", f"{', '.join(repeated)} given twice")
        return self

    def kinds(self) -> dict[str, Any]:
        """Each way of giving values, by its YAML key."""
        return {"choices": self.choices, "int": self.int_range, "float": self.float_range}

    def candidates(self) -> dict[str, Any]:
        """The values that stand for the whole parameter when checking it: every choice, or a range's ends."""
        if self.choices is not None:
            return {f"choices[{i}]": choice for i, choice in enumerate(self.choices)}
        span = self.int_range or self.float_range
        assert span is not None
        kind = "int" if self.int_range is not None else "float"
        return {f"{kind}.low": span.low, f"{kind}.high": span.high}


class Objective(Section):
    """What scores a trial, and whether lower or higher is better."""

    metric: str = Field(
        pattern=METRIC_PATTERN,
        description="A stage's metric as its <stage>/metrics.jsonl records it per epoch (vqvae.val_mse, "
        "vqvae.val_psnr, pixelcnn.val_loss, ...): its value at the stage's last epoch scores the trial and every "
        "epoch's feeds the pruner. Or a figure of evaluation.json (evaluation.frechet.generated, "
        "evaluation.accuracy.mean), known only when the run has ended.",
    )
    direction: Literal["minimize", "maximize"] = Field("minimize", description="minimize or maximize the metric.")

    @property
    def stage(self) -> str:
        """The stage whose metrics.jsonl holds the metric, or "evaluation"."""
        return self.metric.split(".", 1)[0]

    @property
    def key(self) -> str:
        """The metric's key in a metrics.jsonl line, or its dotted path in evaluation.json."""
        return self.metric.split(".", 1)[1]

    @property
    def per_epoch(self) -> bool:
        """Whether every epoch has a value (a stage metric), so a pruner can act on it."""
        return self.stage != "evaluation"


class Pruner(Section):
    """When to stop a trial early: after each epoch its objective is compared with the other trials' at that epoch."""

    type: PrunerType = Field(
        "none",
        description="none; median (stop a trial worse than the median of the finished trials at the same epoch); "
        "successiveHalving (asynchronous successive halving, ASHA); hyperband (several ASHA brackets).",
    )
    startup_trials: int = Field(1, ge=0, description="median: trials that finish before any is pruned.")
    warmup_epochs: int = Field(1, ge=0, description="median: epochs of every trial that are never pruned.")
    min_epochs: int = Field(
        1, ge=1, description="successiveHalving, hyperband: epochs every trial gets before the first rung."
    )
    reduction_factor: int = Field(
        3, ge=2, description="successiveHalving, hyperband: at each rung, one trial in this many goes on."
    )


class SweepBudget(Section):
    """What the whole sweep may cost."""

    max_cost: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Most all trials together may cost, in the unit of the operator's prices (USD by default). "
        "Reached: no new trial starts and the running ones are stopped after a checkpoint; raising it goes on.",
    )


class SweepSpec(Section):
    """The spec of an `MLOpsSweep`: trials of one template run, each with the parameters a search chose."""

    template: MLOpsSpec = Field(description="The MLOps spec every trial starts from.")
    parameters: list[Parameter] = Field(
        min_length=1, max_length=16, description="The config paths the search sets in each trial."
    )
    objective: Objective = Field(description="What scores a trial.")
    trials: int = Field(ge=1, le=1000, description="How many trials to run (at most the grid's size with grid).")
    parallelism: int = Field(1, ge=1, le=64, description="Trials in progress at once.")
    budget: SweepBudget = Field(default_factory=SweepBudget, description="What the whole sweep may cost.")
    sampler: Sampler = Field(
        "tpe",
        description="random; tpe (Optuna's tree-structured Parzen estimator, after startupTrials random ones); "
        "grid (every combination of the choices, in an order shuffled by the seed).",
    )
    startup_trials: int | None = Field(
        None, ge=0, description="tpe: trials sampled at random before TPE models the rest (default: half, at most 10)."
    )
    pruner: Pruner = Field(default_factory=Pruner, description="When to stop a hopeless trial early.")
    seed: int = Field(0, ge=0, description="Seed of the search: the same seed suggests the same parameters.")

    @model_validator(mode="after")
    def _unique_paths(self) -> SweepSpec:
        seen: dict[str, int] = {}
        for index, parameter in enumerate(self.parameters):
            if parameter.path in seen:
                raise blame(f"parameters[{index}].path", f"{parameter.path} repeats parameters[{seen[parameter.path]}]")
            seen[parameter.path] = index
        return self

    @model_validator(mode="after")
    def _search_fits(self) -> SweepSpec:
        if self.sampler == "grid":
            for index, parameter in enumerate(self.parameters):
                if parameter.choices is None:
                    raise blame(f"parameters[{index}]", "the grid sampler takes choices only")
        stages = self.template.stages
        objective = self.objective
        if objective.per_epoch and objective.stage not in stages:
            raise blame("objective.metric", f"stage {objective.stage} is not in template.stages {stages}")
        if not objective.per_epoch:
            if "pixelcnn" not in stages or not self.template.training.pixelcnn.evaluate_count:
                raise blame(
                    "objective.metric",
                    "evaluation figures need the pixelcnn stage with training.pixelcnn.evaluateCount above 0",
                )
            if self.pruner.type != "none":
                raise blame("pruner.type", "an evaluation figure exists only at the end of a run: nothing to prune on")
        elif self.pruner.type in ("successiveHalving", "hyperband") and self.pruner.min_epochs > self.epochs:
            raise blame("pruner.minEpochs", f"{self.pruner.min_epochs} is more than the stage's {self.epochs} epochs")
        return self

    @property
    def epochs(self) -> int:
        """Epochs of the objective's stage in every trial (the pruner's steps are its epochs)."""
        stage = self.objective.stage if self.objective.per_epoch else "pixelcnn"
        return int(getattr(self.template.training, stage).epochs)

    @property
    def grid_size(self) -> int | None:
        """How many combinations the choices make (grid only)."""
        if self.sampler != "grid":
            return None
        return math.prod(len(p.choices or []) for p in self.parameters)

    @property
    def total_trials(self) -> int:
        """Trials the sweep runs: `trials`, at most the grid's size."""
        grid = self.grid_size
        return self.trials if grid is None else min(self.trials, grid)

    @property
    def tpe_startup_trials(self) -> int:
        """Random trials before TPE models: `startupTrials`, else half the trials, at most Optuna's 10."""
        return self.startup_trials if self.startup_trials is not None else min(10, max(1, self.trials // 2))

    def template_raw(self) -> dict[str, Any]:
        """The template as written (defaults left out): what each trial's spec is made from."""
        return self.template.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def search_digest(self) -> str:
        """A digest of the search (everything but budget, trials and parallelism), as written."""
        written = self.model_dump(
            mode="json", by_alias=True, exclude_unset=True, exclude=set(SEARCH_FIXED_ONCE_STARTED)
        )
        return hashlib.sha256(json.dumps(written, sort_keys=True).encode()).hexdigest()[:16]


def encode_choice(choice: Any) -> Any:
    """A choice as a value Optuna can hold: scalars as they are, anything else as its JSON text."""
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return json.dumps(choice, sort_keys=True)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The config section a field holds (through `X | None`), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _section_model(arg)
            if found is not None:
                return found
    return None


def path_problem(path: str) -> str | None:
    """Why `path` names no field of an MLOps spec (camelCase or snake_case keys), or None when it does."""
    model: type[BaseModel] | None = MLOpsSpec
    parts = path.split(".")
    for index, part in enumerate(parts):
        assert model is not None
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        fields.update(model.model_fields)
        where = "template" + "".join(f".{p}" for p in parts[:index])
        if part not in fields:
            known = ", ".join(sorted(info.alias or name for name, info in model.model_fields.items()))
            return f"{where} has no field {part} (it has: {known})"
        model = _section_model(fields[part].annotation)
        if model is None and index < len(parts) - 1:
            return f"{where}.{part} is a value, not a section"
    return None


def parameter_problems(spec: SweepSpec) -> list[str]:
    """One line per parameter whose path is not a field, or whose values would make a trial invalid."""
    lines = []
    template = spec.template_raw()
    for index, parameter in enumerate(spec.parameters):
        where = f"parameters[{index}]"
        problem = path_problem(parameter.path)
        if problem is not None:
            lines.append(f"{where}.path: {problem}")
            continue
        for key, value in parameter.candidates().items():
            try:
                MLOpsSpec.model_validate(apply_values(template, {parameter.path: value}))
            except ConfigError as exc:
                lines.append(f"{where}.{key}: {exc.lines[0]}")
            except ValidationError as exc:
                found = error_lines(exc)
                more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
                lines.append(
                    f"{where}.{key}: {parameter.path}={json.dumps(value)} makes an invalid trial: {found[0]}{more}"
                )
    return lines


def validate_sweep(raw: Any) -> SweepSpec:
    """A raw sweep spec as a `SweepSpec` whose every parameter gives valid trials; ConfigError otherwise."""
    if not isinstance(raw, dict):
        raise ConfigError([f"spec: must be a mapping, got {type(raw).__name__}"])
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(error_lines(exc)) from exc
    lines = parameter_problems(spec)
    if lines:
        raise ConfigError(lines)
    return spec


SWEEP_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_SWEEP_NAME = 50
"""A sweep's name labels its trials (label values: 63 characters) and names them `<name>-t<number>`."""


def sweep_name_problem(name: str) -> str | None:
    """Why `name` cannot name a sweep, or None."""
    if len(name) > MAX_SWEEP_NAME:
        return f"metadata.name: at most {MAX_SWEEP_NAME} characters (it labels every trial), got {len(name)}"
    if not SWEEP_NAME.match(name):
        return f"metadata.name: lower-case letters, digits and '-' only, got {name!r}"
    return None
