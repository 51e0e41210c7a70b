"""Operator settings, read from the environment (the Helm chart sets these on the Deployment).

Environment variables (a flag of `argomlops operator` wins over its variable):

- `ARGOMLOPS_NAMESPACES` (`--namespace NS`, repeatable), default `""`: comma list of namespaces to serve;
  empty or `*` means every namespace (needs cluster-wide RBAC).
- `ARGOMLOPS_PRICE_PER_GPU_HOUR` (`--price-per-gpu-hour USD`), default `0.14`: USD per GPU-hour for the
  cost estimate. 0.14 is the order of magnitude of one T4 spot GPU on GKE (late 2026); set your region's
  price. The VM's CPU and memory are not included.
- `ARGOMLOPS_HISTORY_LIMIT` (`--history-limit N`), default `10`: past runs kept in `status.history`.
- `ARGOMLOPS_WATCH_TIMEOUT` (`--watch-timeout S`), default `300`: server-side timeout of kopf's watch
  requests in seconds; watches are reopened after it, so a silently dropped connection heals within it.

Flags only: `--liveness URL` (kopf's liveness endpoint, e.g. `http://0.0.0.0:8080/healthz`),
`--standalone` (no kopf peering: one replica), `--verbose` (debug logs).

A bad value is an error at start-up naming the variable (exit code 2), never a silent default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from argomlops.errors import InputError

ENV_NAMESPACES = "ARGOMLOPS_NAMESPACES"
ENV_PRICE = "ARGOMLOPS_PRICE_PER_GPU_HOUR"
ENV_HISTORY = "ARGOMLOPS_HISTORY_LIMIT"
ENV_WATCH_TIMEOUT = "ARGOMLOPS_WATCH_TIMEOUT"

DEFAULT_PRICE_PER_GPU_HOUR = 0.14
DEFAULT_HISTORY_LIMIT = 10
DEFAULT_WATCH_TIMEOUT = 300


@dataclass(frozen=True)
class Settings:
    """What the handlers need to know about their deployment."""

    namespaces: tuple[str, ...] = ()
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR
    history_limit: int = DEFAULT_HISTORY_LIMIT
    watch_timeout: int = DEFAULT_WATCH_TIMEOUT

    @property
    def clusterwide(self) -> bool:
        """Whether every namespace is served."""
        return not self.namespaces


def _number(env: Mapping[str, str], name: str, kind: type[int] | type[float], default: float, low: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise InputError(f"{name}: not a{'n integer' if kind is int else ' number'}: {raw!r}") from None
    # float() reads "nan" and "inf"; a NaN cost is not even valid JSON for the status patch.
    if not math.isfinite(value):
        raise InputError(f"{name}: not a finite number: {raw!r}")
    if value < low:
        raise InputError(f"{name}: must be at least {low}, got {raw!r}")
    return value


def parse_namespaces(raw: str) -> tuple[str, ...]:
    """`"a, b"` → `("a", "b")`; `""` or `"*"` → `()` (every namespace)."""
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    return () if names in ((), ("*",)) else names


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment; raises InputError naming the variable when a value is bad."""
    env = os.environ if env is None else env
    return Settings(
        namespaces=parse_namespaces(env.get(ENV_NAMESPACES, "")),
        price_per_gpu_hour=float(_number(env, ENV_PRICE, float, DEFAULT_PRICE_PER_GPU_HOUR, 0.0)),
        history_limit=int(_number(env, ENV_HISTORY, int, DEFAULT_HISTORY_LIMIT, 0)),
        watch_timeout=int(_number(env, ENV_WATCH_TIMEOUT, int, DEFAULT_WATCH_TIMEOUT, 1)),
    )
