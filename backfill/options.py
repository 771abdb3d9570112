"""What a user may choose when starting a job, with its bounds, in one place.

The CLI, the dashboard's start form and its template all read `bounds()`, so
the limits shown are the limits enforced.
"""

from dataclasses import dataclass

from backfill import conf
from backfill.conf import BatchLimits
from backfill.errors import BackfillError


@dataclass(frozen=True)
class Bound:
    low: int
    high: int
    default_setting: str
    label: str


def bounds() -> dict[str, Bound]:
    limits = BatchLimits.from_settings()
    return {
        "batch_size": Bound(limits.min_size, limits.max_size, "BACKFILL_BATCH_SIZE", "batch size"),
        "concurrency": Bound(1, 64, "BACKFILL_CONCURRENCY", "concurrency"),
        "pause_ms": Bound(0, 60_000, "BACKFILL_PAUSE_MS", "pause (ms)"),
    }


@dataclass(frozen=True)
class JobOptions:
    """Validated before anything runs: a bad value changes nothing."""

    batch_size: int
    concurrency: int
    pause_ms: int

    @classmethod
    def build(
        cls,
        batch_size: int | None = None,
        concurrency: int | None = None,
        pause_ms: int | None = None,
    ) -> "JobOptions":
        given = {"batch_size": batch_size, "concurrency": concurrency, "pause_ms": pause_ms}
        values = {}
        for name, bound in bounds().items():
            value = given[name]
            value = conf.get_int(bound.default_setting) if value is None else value
            if not bound.low <= value <= bound.high:
                raise BackfillError(
                    f"{bound.label} must be between {bound.low} and {bound.high}, got {value}"
                )
            values[name] = value
        return cls(**values)
