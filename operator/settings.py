"""Operator settings: `ARGOMLOPS_*` environment variables (the Helm chart sets them), overridden by flags.

- `ARGOMLOPS_NAMESPACES` (`--namespace NS`, repeatable), default `""`: comma list of namespaces to
  serve; empty or `*` means every namespace (needs cluster-wide RBAC).
- `ARGOMLOPS_PRICE_PER_GPU_HOUR` (`--price-per-gpu-hour USD`), default `0.14`: USD per GPU-hour.
- `ARGOMLOPS_HISTORY_LIMIT` (`--history-limit N`), default `10`: past runs kept in `status.history`.
- `ARGOMLOPS_WATCH_TIMEOUT` (`--watch-timeout S`), default `300`: server-side timeout of kopf's watches.

0.14 USD is the order of magnitude of one T4 spot GPU on GKE (late 2026); set your region's price. The
watches are reopened after their timeout, so a silently dropped connection heals within it.

`argomlops operator` parses flags and environment once into `OperatorSettings` and hands them to kopf
in its memo (`kopf.run(memo=...)`); the startup handler reads them from there, and only builds them
from the environment when the handlers run under plain `kopf run`. A bad value stops the operator at
start-up with one line naming the variable or flag (exit code 2), never a silent default.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from argomlops.errors import InputError

ENV_PREFIX = "ARGOMLOPS_"


class OperatorSettings(BaseSettings):
    """What the handlers need to know about their deployment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # NoDecode: a comma list, not the JSON pydantic-settings expects of a sequence in the environment.
    namespaces: Annotated[tuple[str, ...], NoDecode] = Field((), description="Namespaces served; () is every one.")
    price_per_gpu_hour: float = Field(0.14, ge=0.0, allow_inf_nan=False, description="USD per GPU-hour.")
    history_limit: int = Field(10, ge=0, description="Past runs kept in status.history.")
    watch_timeout: int = Field(300, ge=1, description="Server-side timeout of kopf's watch requests, s.")

    @field_validator("namespaces", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return parse_namespaces(value) if isinstance(value, str) else value

    @property
    def clusterwide(self) -> bool:
        """Whether every namespace is served."""
        return not self.namespaces


def parse_namespaces(raw: str) -> tuple[str, ...]:
    """`"a, b"` → `("a", "b")`; `""` or `"*"` → `()` (every namespace)."""
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    return () if names in ((), ("*",)) else names


FLAGS = {
    "namespaces": "--namespace",
    "price_per_gpu_hour": "--price-per-gpu-hour",
    "history_limit": "--history-limit",
    "watch_timeout": "--watch-timeout",
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
