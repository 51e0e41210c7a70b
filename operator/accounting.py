"""What a run costs, charged per interval at the prices in force, and what its caps make of it.

Pure functions: `charging.py` feeds them what the Workflows and the status say and writes the result.

Charging. A run's usage (`Meters`: node- and GPU-seconds, bucket operations by class) only grows. The
status keeps the part already charged (`charged`) and the money (`cost`). A charge turns the growth
since then into money at today's prices:

    cost.node       += (node_seconds - charged.node_seconds) / 3600 x node price per hour
    cost.gpu        += (gpu_seconds - charged.gpu_seconds) / 3600 x GPU price per hour
    cost.operations += (class_a - charged.class_a) / 1000 x Class A price + the same for Class B
    cost.storage    += GiB stored x seconds since the last charge / SECONDS_PER_MONTH x price per GiB-month

so a price change applies from the moment the operator sees it and never re-prices the past. A pod's
time is counted to "now" while it runs; when Argo later writes its end a little before that "now", the
difference comes back negative and is refunded at today's price. Storage is charged while the run is in
progress (its Workflow not finished): what keeping the folder costs afterwards is its size times the
price per GiB-month, which the status shows as `storedGiB`.

Caps. A run has its own (`spec.budget.maxCost`, over all its Workflows) and shares its namespace's
monthly cap. `tightest` is the cap nearest to being spent; at `WARN_AT` (80 %) of it the run gets the
BudgetWarning condition and an event, at 100 % it is stopped (charging.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from argomlops.operator.mlops_status import Condition, Cost, Meters, MonthSpend
from argomlops.operator.settings import Prices

SECONDS_PER_MONTH = 730 * 3600
"""Google bills a month of storage as 730 hours."""
WARN_AT = 0.8
GIB = float(1 << 30)


def total_usage(entries: Iterable[Meters]) -> Meters:
    """The sum of several Workflows' usage."""
    total = Meters()
    for entry in entries:
        total = Meters(
            node_seconds=total.node_seconds + entry.node_seconds,
            gpu_seconds=total.gpu_seconds + entry.gpu_seconds,
            class_a=total.class_a + entry.class_a,
            class_b=total.class_b + entry.class_b,
            attempts=total.attempts + entry.attempts,
            preemptions=total.preemptions + entry.preemptions,
        )
    return total


def charge(
    cost: Cost, charged: Meters, reading: Meters, prices: Prices, *, stored_gib: float | None, stored_seconds: float
) -> Cost:
    """`cost` plus what `reading` grew since `charged`, and `stored_gib` kept for `stored_seconds`, at `prices`."""
    node = (reading.node_seconds - charged.node_seconds) / 3600.0 * prices.node_hour
    gpu = (reading.gpu_seconds - charged.gpu_seconds) / 3600.0 * prices.gpu_hour
    operations = (reading.class_a - charged.class_a) / 1000.0 * prices.class_a_per_1000 + (
        reading.class_b - charged.class_b
    ) / 1000.0 * prices.class_b_per_1000
    storage = (stored_gib or 0.0) * max(0.0, stored_seconds) / SECONDS_PER_MONTH * prices.gib_month
    parts = {
        "node": cost.node + node,
        "gpu": cost.gpu + gpu,
        "storage": cost.storage + storage,
        "operations": cost.operations + operations,
    }
    # Nine decimals: short enough to read, and thousands of charges still add up to the cent.
    rounded = {name: round(value, 9) for name, value in parts.items()}
    return Cost(**rounded, total=round(sum(parts.values()), 9))


def price_of(usage: Meters, prices: Prices) -> float:
    """What `usage` costs at `prices` (node, GPU and operations; an estimate for a run no longer charged)."""
    return charge(Cost(), Meters(), usage, prices, stored_gib=None, stored_seconds=0.0).total


def month_of(moment: datetime) -> str:
    """The calendar month (UTC) of a moment, YYYY-MM."""
    return moment.strftime("%Y-%m")


def add_to_month(spend: MonthSpend | None, amount: float, now: datetime) -> MonthSpend:
    """This month's spend after `amount` more: a new month starts from nothing."""
    month = month_of(now)
    before = spend.cost if spend is not None and spend.month == month else 0.0
    return MonthSpend(month=month, cost=round(before + amount, 9))


CapReason = Literal["MaxCost", "NamespaceMonthlyCap"]


@dataclass(frozen=True)
class Cap:
    """One cap on a run, and what is spent of it."""

    reason: CapReason
    limit: float
    spent: float
    scope: str

    @property
    def fraction(self) -> float:
        """How much of the cap is spent (1.0 = all of it)."""
        return self.spent / self.limit

    def describe(self) -> str:
        """One line: what is spent of which cap."""
        return f"{self.scope} spent {self.spent:.4f} of {self.limit:g} USD ({100 * self.fraction:.0f} %)"


def run_caps(
    max_cost: float | None, run_cost: float, namespace: str, monthly_cap: float | None, month: str, month_spent: float
) -> list[Cap]:
    """The caps on a run: its own maxCost and its namespace's monthly cap, where they are set."""
    caps = []
    if max_cost is not None:
        caps.append(Cap("MaxCost", max_cost, run_cost, "the run (budget.maxCost)"))
    if monthly_cap is not None:
        caps.append(Cap("NamespaceMonthlyCap", monthly_cap, month_spent, f"namespace {namespace} in {month}"))
    return caps


def tightest(caps: Iterable[Cap]) -> Cap | None:
    """The cap nearest to being spent (the one that stops the run first), or None without caps."""
    return max(caps, key=lambda cap: cap.fraction, default=None)


def budget_conditions(
    previous: list[Condition] | None, tight: Cap | None, over: bool, now: datetime
) -> list[Condition]:
    """The BudgetWarning and OverBudget conditions, keeping each one's transition time while its status holds."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    old = {condition.type: condition for condition in previous or []}
    warn = tight is not None and tight.fraction >= WARN_AT
    wanted = [
        (
            "BudgetWarning",
            warn,
            tight.reason if warn and tight else "WithinBudget",
            tight.describe() if warn and tight else "",
        ),
        (
            "OverBudget",
            over,
            tight.reason if over and tight else "WithinBudget",
            f"stopped: {tight.describe()}" if over and tight else "",
        ),
    ]
    conditions = []
    for kind, holds, reason, message in wanted:
        status: Literal["True", "False"] = "True" if holds else "False"
        before = old.get(kind)  # type: ignore[call-overload]
        since = before.last_transition_time if before is not None and before.status == status else stamp
        conditions.append(
            Condition(type=kind, status=status, reason=reason, message=message, last_transition_time=since)  # type: ignore[arg-type]
        )
    return conditions


def condition_holds(conditions: list[Condition] | None, kind: str) -> bool:
    """Whether the condition `kind` is True among `conditions`."""
    return any(condition.type == kind and condition.status == "True" for condition in conditions or [])
