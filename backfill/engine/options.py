"""What a user may choose when starting a job, with its bounds, in one place.

The CLI, the dashboard's start form and its template all read `bounds()`, so
the limits shown are the limits enforced.
"""

from dataclasses import dataclass, field

from backfill import conf
from backfill.conf import BatchLimits, Budgets
from backfill.errors import BackfillError


@dataclass(frozen=True)
class Bound:
    low: int
    high: int
    default: int
    label: str


def bounds() -> dict[str, Bound]:
    limits, now = BatchLimits.from_settings(), conf.current()
    return {
        "batch_size": Bound(limits.min_size, limits.max_size, now.batch_size, "batch size"),
        "concurrency": Bound(1, 64, now.concurrency, "concurrency"),
        "pause_ms": Bound(0, 60_000, now.pause_ms, "pause (ms)"),
    }


@dataclass(frozen=True)
class BudgetBound:
    low: float
    high: float
    default: float
    label: str
    # Below `low`, only 0 is accepted, meaning "no budget".
    zero_is_none: bool = False


def budget_bounds() -> dict[str, BudgetBound]:
    """The pacing budgets (backfill/pacing/); the keys are `Budgets`' fields."""
    now = conf.current()
    return {
        "latency_ratio": BudgetBound(
            1.1, 100, now.max_latency_ratio, "max latency ratio", zero_is_none=True
        ),
        "replica_lag_seconds": BudgetBound(
            0.1, 86_400, now.max_replica_lag_seconds, "max replica lag (s)", True
        ),
        "transaction_age_seconds": BudgetBound(
            1, 86_400, now.max_transaction_age_seconds, "max transaction age (s)", True
        ),
        "wal_mb_per_second": BudgetBound(
            0.1, 100_000, now.max_wal_mb_per_second, "max WAL rate (MB/s)", True
        ),
    }


def default_budgets() -> Budgets:
    return build_budgets({})


def build_budgets(given: dict[str, float | None]) -> Budgets:
    values = {}
    for name, bound in budget_bounds().items():
        value = given.get(name)
        value = bound.default if value is None else float(value)
        allowed = bound.low <= value <= bound.high or (bound.zero_is_none and value == 0)
        if not allowed:
            none = " (or 0 for none)" if bound.zero_is_none else ""
            raise BackfillError(
                f"{bound.label} must be between {bound.low:g} and {bound.high:g}{none}, got {value:g}"
            )
        values[name] = value
    return Budgets(**values)


@dataclass(frozen=True)
class JobOptions:
    """Validated before anything runs: a bad value changes nothing."""

    batch_size: int
    concurrency: int
    pause_ms: int
    # Health-aware pacing, on by default; `pause_ms` stays its floor.
    pace: bool = True
    budgets: Budgets = field(default_factory=default_budgets)

    @classmethod
    def build(
        cls,
        batch_size: int | None = None,
        concurrency: int | None = None,
        pause_ms: int | None = None,
        pace: bool | None = None,
        budgets: dict[str, float | None] | None = None,
    ) -> "JobOptions":
        given = {"batch_size": batch_size, "concurrency": concurrency, "pause_ms": pause_ms}
        values = {}
        for name, bound in bounds().items():
            value = given[name]
            value = bound.default if value is None else value
            if not bound.low <= value <= bound.high:
                raise BackfillError(
                    f"{bound.label} must be between {bound.low} and {bound.high}, got {value}"
                )
            values[name] = value
        return cls(
            **values,
            pace=conf.current().pace if pace is None else pace,
            budgets=build_budgets(budgets or {}),
        )
