"""The cluster's part of an MLOps spec: image, placement, budget and an optional git source, beside the run config."""

from __future__ import annotations

import hashlib
import json
import re

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from argomlops.config.base import SECRET_ERROR, Section
from argomlops.config.run import RunConfig

CREDENTIALS_IN_URL = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@"
"""A URL whose authority holds a user (and mostly a password or token): `https://user:token@host/...`.
The same expression (RE2 and Python agree on it) is the CRD's admission rule on `git.repo`, so a real
API server refuses such an object before the token is stored anywhere."""
CREDENTIALS_MESSAGE = (
    "must not carry credentials (user:token@ in the URL ends up in the Workflow and its logs): put them "
    "in a Secret of type kubernetes.io/basic-auth and name it in git.secret"
)
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class GitSource(Section):
    """Optional user code: a git repository and a command to run instead of the built-in trainer."""

    repo: str = Field(
        max_length=2048,
        description="HTTPS URL of the git repository, without credentials (a private one: see secret).",
        # The CEL rule's cost is bounded by maxLength; the message is what `kubectl apply` prints.
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": f"!self.matches('{CREDENTIALS_IN_URL}')", "message": f"git.repo {CREDENTIALS_MESSAGE}"}
            ]
        },
    )
    revision: str = Field("main", description="Branch, tag or commit to check out.")
    secret: str | None = Field(
        None,
        pattern=_DNS_SUBDOMAIN,
        description="A private repository: the name of a Secret of type kubernetes.io/basic-auth (keys "
        "username and password, e.g. a token as the password) in the object's namespace. Argo's git "
        "artifact reads it when it clones; the token never leaves the Secret.",
    )
    command: list[str] = Field(
        min_length=1,
        description="Command run in the checkout, e.g. [python, train.py, --config, /etc/argomlops/run.yaml].",
    )

    @field_validator("repo")
    @classmethod
    def _https(cls, value: str) -> str:
        if re.match(CREDENTIALS_IN_URL, value):
            # Never echo the value: it holds the token (error_lines leaves the input out of this type).
            raise PydanticCustomError(SECRET_ERROR, f"repo {CREDENTIALS_MESSAGE}")
        if not value.startswith("https://"):
            raise ValueError(f"repo must be an https:// URL, got {value!r}")
        return value


class Placement(Section):
    """Where a run's pods go (the cluster's part of the spec)."""

    gpus: int = Field(
        1,
        ge=0,
        le=8,
        description="GPUs per training pod (0 = CPU only); with more than one, both stages train on all of them "
        "(MirroredStrategy, one machine: the node pool needs that many GPUs per node).",
    )
    accelerator: str = Field(
        "nvidia-tesla-t4", pattern=r"^[a-z0-9-]+$", description="GKE accelerator type (node label value)."
    )
    spot: bool = Field(True, description="Run on spot/preemptible nodes; preemptions are retried.")
    max_preemptions: int = Field(10, ge=0, le=100, description="How many preemptions a stage may survive.")
    active_deadline_seconds: int = Field(
        86400, ge=60, description="Hard limit on one run's wall time, preemptions included."
    )


class Budget(Section):
    """What a run may cost; the operator warns at 80 % and stops the run after a checkpoint at 100 %."""

    max_cost: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Most the run may cost, in the unit of the operator's prices (USD by default), all its "
        "attempts and resumes together. Raising it resumes a run it stopped, with the same run id. "
        "Absent: no cap of its own (the namespace's monthly cap still applies).",
    )


class MLOpsSpec(RunConfig):
    """The spec of an `MLOps` object: the run config plus the image, placement and budget."""

    image: str | None = Field(
        None,
        min_length=1,
        description="Trainer container image. Absent: the operator's default, the Helm chart's trainer.image.",
    )
    placement: Placement = Field(default_factory=Placement, description="Node pool, GPUs and preemption budget.")
    budget: Budget = Field(
        default_factory=Budget,
        description="What the run may cost. Changing only the budget never starts a new run: it stops or "
        "resumes the current one.",
    )
    git: GitSource | None = Field(None, description="Run this repository's command instead of the built-in trainer.")

    def run_config(self) -> RunConfig:
        """The script's part of the spec: what goes into the per-run ConfigMap."""
        fields = set(RunConfig.model_fields)
        return RunConfig.model_validate(self.model_dump(include=fields))

    def run_digest(self) -> str:
        """A digest of everything but the budget, as written (defaults left out): equal digests, same run.

        Only the fields the manifest sets count, so an operator whose models gained a defaulted field
        still recognises a budget-only change of a run it started before.
        """
        written = self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"budget"})
        return hashlib.sha256(json.dumps(written, sort_keys=True).encode()).hexdigest()[:16]


CLUSTER_FIELDS = frozenset(MLOpsSpec.model_fields) - frozenset(RunConfig.model_fields)
"""The spec's keys that are the cluster's part (snake_case names); a config holding one is a manifest spec."""
