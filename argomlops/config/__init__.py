"""The run configuration: one set of pydantic models shared by the trainer, the operator and the CRD.

The trainer reads `run.yaml` with `RunConfig`; the operator validates an `MLOps` object's spec with
`MLOpsSpec` (a `RunConfig` plus the cluster's part: image and placement); the CRD schema is generated
from the same models. This package must stay importable without TensorFlow or kopf.

One module per concern: `base` (the strict camelCase section, URI checks, `blame` for cross-field
rules), one per section (`data`, `models`, `training`, `run`, `cluster`), `errors` (one line per bad
field) and `loading` (YAML files, `--set` overrides).

Field names are snake_case in Python and camelCase in YAML (the Kubernetes convention); both spellings
are accepted on input, camelCase is written on output.
"""

from argomlops.config.base import Section
from argomlops.config.cluster import CLUSTER_FIELDS, Budget, GitSource, MLOpsSpec, Placement
from argomlops.config.data import BUILTIN_SOURCES, DataConfig
from argomlops.config.errors import ConfigError, error_lines
from argomlops.config.loading import apply_overrides, load_config, load_raw, parse_override, validate_spec
from argomlops.config.models import ModelsConfig, PixelCNNConfig, VQVAEConfig
from argomlops.config.run import STAGE_ORDER, RunConfig, Stage
from argomlops.config.training import PixelCNNTraining, StageTraining, TrainingConfig

__all__ = [
    "BUILTIN_SOURCES",
    "CLUSTER_FIELDS",
    "STAGE_ORDER",
    "Budget",
    "ConfigError",
    "DataConfig",
    "GitSource",
    "MLOpsSpec",
    "ModelsConfig",
    "PixelCNNConfig",
    "PixelCNNTraining",
    "Placement",
    "RunConfig",
    "Section",
    "Stage",
    "StageTraining",
    "TrainingConfig",
    "VQVAEConfig",
    "apply_overrides",
    "error_lines",
    "load_config",
    "load_raw",
    "parse_override",
    "validate_spec",
]
