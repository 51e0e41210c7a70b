"""Operator settings: `ARGOMLOPS_*` environment variables (the Helm chart sets them), overridden by flags.

Serving:

- `ARGOMLOPS_NAMESPACES` (`--namespace NS`, repeatable), default `""`: comma list of namespaces to
  serve; empty or `*` means every namespace (needs cluster-wide RBAC).
- `ARGOMLOPS_HISTORY_LIMIT` (`--history-limit N`), default `10`: past runs kept in `status.history`.
- `ARGOMLOPS_WATCH_TIMEOUT` (`--watch-timeout S`), default `300`: server-side timeout of kopf's watches.
- `ARGOMLOPS_CHARGE_INTERVAL` (`--charge-interval S`), default `30`: at least this often a run in
  progress is charged for the time since, even when its Workflow does not change.
- `ARGOMLOPS_TRAINER_IMAGE` (`--trainer-image IMAGE`), default none: the trainer image of MLOps objects
  without `spec.image` (the chart's `trainer.image`). Without it such an object is Invalid, with one
  line saying so, rather than a Workflow whose pods wait forever for an image nobody published.

Prices (USD; the chart's `prices` block, dated there, with where to check today's):

- `ARGOMLOPS_PRICE_PER_GPU_HOUR` 0.14: one GPU (a spot T4).
- `ARGOMLOPS_PRICE_PER_VCPU_HOUR` 0.0067 and `ARGOMLOPS_PRICE_PER_GIB_HOUR` 0.0009: the node's vCPUs and
  memory (N1 spot); `ARGOMLOPS_NODE_VCPUS` 4 and `ARGOMLOPS_NODE_MEMORY_GIB` 15: the machine every pod
  gets (n1-standard-4).
- `ARGOMLOPS_PRICE_PER_GIB_MONTH` 0.020: standard storage; `ARGOMLOPS_PRICE_PER_1000_CLASS_A` 0.005 and
  `ARGOMLOPS_PRICE_PER_1000_CLASS_B` 0.0004: bucket operations (us-central1).

Budgets:

- `ARGOMLOPS_MONTHLY_CAP` (`--monthly-cap USD`), default none: what each namespace served may spend per
  calendar month (UTC), all its MLOps objects together.
- `ARGOMLOPS_MONTHLY_CAPS` (`--monthly-caps NS=USD,...`), default none: caps of single namespaces,
  overriding `ARGOMLOPS_MONTHLY_CAP`.

A price takes effect from the moment the operator runs with it: the chart rolls the operator's pod when
a value changes, and the cost of a run is charged per interval at the prices in force then, so what a
run cost before a change stays as it was charged. The watches are reopened after their timeout, so a
silently dropped connection heals within it.

`argomlops operator` parses flags and environment once into `OperatorSettings` and hands them to kopf
in its memo (`kopf.run(memo=...)`); the startup handler reads them from there, and only builds them
from the environment when the handlers run under plain `kopf run`. A bad value stops the operator at
start-up with one line naming the variable or flag (exit code 2), never a silent default.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from argomlops.errors import InputError

ENV_PREFIX = "ARGOMLOPS_"
Price = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class Prices(BaseModel):
    """What the operator charges for what a run uses, USD."""

    model_config = ConfigDict(frozen=True)

    gpu_hour: Price
    vcpu_hour: Price
    gib_hour: Price
    node_vcpus: Price
    node_memory_gib: Price
    gib_month: Price
    class_a_per_1000: Price
    class_b_per_1000: Price

    @property
    def node_hour(self) -> float:
        """One hour of the machine a pod runs on: its vCPUs and memory."""
        return self.node_vcpus * self.vcpu_hour + self.node_memory_gib * self.gib_hour


class OperatorSettings(BaseSettings):
    """What the handlers need to know about their deployment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # NoDecode: a comma list, not the JSON pydantic-settings expects of a sequence in the environment.
    namespaces: Annotated[tuple[str, ...], NoDecode] = Field((), description="Namespaces served; () is every one.")
    history_limit: int = Field(10, ge=0, description="Past runs kept in status.history.")
    watch_timeout: int = Field(300, ge=1, description="Server-side timeout of kopf's watch requests, s.")
    charge_interval: float = Field(30.0, ge=1.0, le=3600.0, description="Most seconds between charges of a run.")
    trainer_image: str | None = Field(None, description="Trainer image of MLOps objects without spec.image.")
    price_per_gpu_hour: Price = Field(0.14, description="USD per GPU-hour.")
    price_per_vcpu_hour: Price = Field(0.0067, description="USD per vCPU-hour of the node.")
    price_per_gib_hour: Price = Field(0.0009, description="USD per GiB-hour of the node's memory.")
    node_vcpus: Price = Field(4.0, description="vCPUs of the machine a pod runs on.")
    node_memory_gib: Price = Field(15.0, description="GiB of memory of the machine a pod runs on.")
    price_per_gib_month: Price = Field(0.020, description="USD per GiB-month stored in the bucket.")
    price_per_1000_class_a: Price = Field(0.005, description="USD per 1000 Class A bucket operations.")
    price_per_1000_class_b: Price = Field(0.0004, description="USD per 1000 Class B bucket operations.")
    monthly_cap: float | None = Field(None, gt=0.0, allow_inf_nan=False, description="USD per namespace and month.")
    monthly_caps: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, description="USD per month of single namespaces, NS=USD,..."
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return parse_namespaces(value) if isinstance(value, str) else value

    @field_validator("monthly_cap", "trainer_image", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("monthly_caps", mode="before")
    @classmethod
    def _caps(cls, value: Any) -> Any:
        return parse_caps(value) if isinstance(value, str) else value

    @field_validator("monthly_caps")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for namespace, cap in value.items():
            if not cap > 0 or cap == float("inf"):
                raise ValueError(f"the cap of {namespace} must be a positive number, got {cap}")
        return value

    @property
    def clusterwide(self) -> bool:
        """Whether every namespace is served."""
        return not self.namespaces

    def prices(self) -> Prices:
        """The prices in force."""
        return Prices(
            gpu_hour=self.price_per_gpu_hour,
            vcpu_hour=self.price_per_vcpu_hour,
            gib_hour=self.price_per_gib_hour,
            node_vcpus=self.node_vcpus,
            node_memory_gib=self.node_memory_gib,
            gib_month=self.price_per_gib_month,
            class_a_per_1000=self.price_per_1000_class_a,
            class_b_per_1000=self.price_per_1000_class_b,
        )

    def monthly_cap_of(self, namespace: str) -> float | None:
        """The monthly cap of `namespace`: its own, else every namespace's, else none."""
        return self.monthly_caps.get(namespace, self.monthly_cap)


def parse_namespaces(raw: str) -> tuple[str, ...]:
    """`"a, b"` → `("a", "b")`; `""` or `"*"` → `()` (every namespace)."""
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    return () if names in ((), ("*",)) else names


def parse_caps(raw: str) -> dict[str, float]:
    """`"team-a=300, team-b=50.5"` → `{"team-a": 300.0, "team-b": 50.5}`; ValueError naming a bad item."""
    caps: dict[str, float] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        namespace, sep, value = item.partition("=")
        try:
            caps[namespace.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not namespace.strip():
            raise ValueError(f"expected NAMESPACE=USD, got {item!r}")
    return caps


FLAGS = {
    "namespaces": "--namespace",
    "history_limit": "--history-limit",
    "watch_timeout": "--watch-timeout",
    "charge_interval": "--charge-interval",
    "trainer_image": "--trainer-image",
    "price_per_gpu_hour": "--price-per-gpu-hour",
    "price_per_vcpu_hour": "--price-per-vcpu-hour",
    "price_per_gib_hour": "--price-per-gib-hour",
    "node_vcpus": "--node-vcpus",
    "node_memory_gib": "--node-memory-gib",
    "price_per_gib_month": "--price-per-gib-month",
    "price_per_1000_class_a": "--price-per-1000-class-a",
    "price_per_1000_class_b": "--price-per-1000-class-b",
    "monthly_cap": "--monthly-cap",
    "monthly_caps": "--monthly-caps",
}
"""The `argomlops operator` flag of each settings field (`--namespace` is repeatable)."""


def env_name(field: str) -> str:
    """The environment variable of a settings field (`history_limit` → `ARGOMLOPS_HISTORY_LIMIT`)."""
    return ENV_PREFIX + field.upper()


def load_settings(flags: dict[str, Any] | None = None) -> OperatorSettings:
    """Settings from the flags given (by field name; None = not given) over the environment.

    Raises:
        InputError: one line naming the flag or variable of the first bad value.
    """
    given = {key: value for key, value in (flags or {}).items() if value is not None}
    try:
        return OperatorSettings(**given)
    except ValidationError as exc:
        item = exc.errors(include_url=False)[0]
        field = str(item["loc"][0])
        source = FLAGS[field] if field in given else env_name(field)
        raise InputError(f"{source}: {item['msg'].removeprefix('Value error, ')} (got {item['input']!r})") from None
