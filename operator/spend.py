"""The namespace's spend per calendar month: the `argomlops-spend` ConfigMap, and `argomlops spend`.

Each MLOps object's status keeps its own spend this month (`status.monthToDate`). The operator copies
it, after every charge, into one ConfigMap per namespace, under a key of the month and the object:

    data:
      2026-12.fafa.3f2a91c0: "12.418230"     # <month>.<MLOps name>.<first 8 characters of its uid>
      2026-12.smoke.77b0e1d4: "0.031200"
    annotations:
      argomlops.dev/monthly-cap: "100"       # the namespace's cap, as the operator last saw it

Each object writes only its own key, with its absolute figure, so writers never conflict and a write
repeated after a restart changes nothing; the uid keeps an object deleted and made again under the same
name from overwriting what the first one spent. The namespace's month-to-date is the sum of the month's
keys: deleting an MLOps object does not take its spend out of the month. Months older than a year are
dropped as the operator writes.

A person sees it with `argomlops spend [--namespace NS] [--month YYYY-MM]` (a table: object, spend,
total, cap) or `kubectl get configmap argomlops-spend -o yaml`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import kubernetes

SPEND_CONFIG_MAP = "argomlops-spend"
CAP_ANNOTATION = "argomlops.dev/monthly-cap"
KEEP_MONTHS = 13


def entry_key(month: str, name: str, uid: str) -> str:
    """The ConfigMap key of one object's spend in one month."""
    return f"{month}.{name}.{uid[:8]}"


def month_entries(data: dict[str, str] | None, month: str) -> dict[str, float]:
    """The month's entries of the ConfigMap's data, by key (unreadable values count as nothing)."""
    entries = {}
    for key, value in (data or {}).items():
        if key.startswith(f"{month}."):
            try:
                entries[key] = float(value)
            except ValueError:
                continue
    return entries


def read_spend(core: kubernetes.client.CoreV1Api, namespace: str) -> dict[str, str]:
    """The ConfigMap's data, empty when there is none yet."""
    try:
        found = core.read_namespaced_config_map(SPEND_CONFIG_MAP, namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    return dict(found.data or {})


def record_spend(
    core: kubernetes.client.CoreV1Api, namespace: str, key: str, cost: float, cap: float | None, now: datetime
) -> None:
    """Write one object's spend of a month (creating the ConfigMap the first time), and drop old months."""
    data: dict[str, str | None] = {key: f"{cost:.6f}"}
    oldest = f"{now.year - 1:04d}-{now.month:02d}"
    for existing in read_spend(core, namespace):
        if existing[:7] < oldest:
            data[existing] = None  # a merge patch removes keys set to null
    annotations = {CAP_ANNOTATION: "" if cap is None else f"{cap:g}"}
    patch = {"metadata": {"annotations": annotations}, "data": data}
    try:
        core.patch_namespaced_config_map(SPEND_CONFIG_MAP, namespace, patch)
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise
        labels = {"app.kubernetes.io/part-of": "argomlops", "app.kubernetes.io/component": "spend"}
        made = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": SPEND_CONFIG_MAP,
                "namespace": namespace,
                "labels": labels,
                "annotations": annotations,
            },
            "data": {k: v for k, v in data.items() if v is not None},
        }
        try:
            core.create_namespaced_config_map(namespace, made)  # type: ignore[arg-type]
        except kubernetes.client.ApiException as again:
            if again.status != 409:  # another handler made it in between: patch that one
                raise
            core.patch_namespaced_config_map(SPEND_CONFIG_MAP, namespace, patch)


def spend_table(data: dict[str, str], month: str, cap: str) -> list[str]:
    """The lines `argomlops spend` prints for one namespace and month."""
    entries = month_entries(data, month)
    lines = [f"{'OBJECT':<40} {'SPENT (USD)':>14}"]
    for key, cost in sorted(entries.items(), key=lambda item: -item[1]):
        lines.append(f"{key.split('.', 1)[1].rsplit('.', 1)[0]:<40} {cost:>14.4f}")
    total = sum(entries.values())
    lines.append(f"{'total ' + month:<40} {total:>14.4f}")
    lines.append(f"{'monthly cap':<40} {cap or 'none':>14}")
    return lines


def spend_command(argv: list[str]) -> int:
    """`argomlops spend`: a namespace's spend this month (or another), from its argomlops-spend ConfigMap."""
    parser = argparse.ArgumentParser(prog="argomlops spend", description=spend_command.__doc__)
    parser.add_argument("--namespace", "-n", help="namespace (default: the kubeconfig context's)")
    parser.add_argument("--month", help="YYYY-MM (default: this month, UTC)")
    args = parser.parse_args(argv)
    from argomlops.operator.client import api_client, context_namespace

    namespace = args.namespace or context_namespace()
    month = args.month or datetime.now(UTC).strftime("%Y-%m")
    core = kubernetes.client.CoreV1Api(api_client())
    try:
        found: Any = core.read_namespaced_config_map(SPEND_CONFIG_MAP, namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            print(
                f"argomlops spend: reading {namespace}/{SPEND_CONFIG_MAP}: {exc.status} {exc.reason}", file=sys.stderr
            )
            return 1
        print(f"namespace {namespace}: nothing spent yet (no {SPEND_CONFIG_MAP} ConfigMap)")
        return 0
    cap = (found.metadata.annotations or {}).get(CAP_ANNOTATION, "")
    print(f"namespace {namespace}, {month}:")
    print("\n".join(spend_table(dict(found.data or {}), month, cap)))
    return 0
