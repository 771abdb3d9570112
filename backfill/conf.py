"""Every BACKFILL_* setting, its default and why, read through one typed object.

Override any of them in Django settings as `BACKFILL_<NAME>`. `current()`
reads them at call time (so tests can change them with pytest-django's
`settings` fixture) and refuses a value of the wrong type with
ImproperlyConfigured naming the setting, instead of failing later inside a
batch.
"""

from dataclasses import dataclass, fields
from typing import Any, cast

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

PREFIX = "BACKFILL_"


@dataclass(frozen=True)
class Settings:
    # Rows per batch at the start of a job; the throttle then adapts it.
    batch_size: int = 1000
    min_batch_size: int = 50
    max_batch_size: int = 100_000
    # The batch size adapts toward this duration: long enough to amortise the
    # commit, short enough that an app write queued behind a locked row waits
    # less than this. At 0.2 s the benchmark's app saw lock waits past 500 ms
    # (a slow first batch, a pass over skipped rows); at 0.05 s it stays near
    # 150 ms, for about 15% fewer rows per second (docs/benchmarks.md).
    target_batch_seconds: float = 0.05
    # While no session has waited on the job's batches for `calm_seconds`,
    # batches grow toward this longer duration instead: nobody pays for the
    # locks, and a batch's fixed cost (its statements, its commit) is spread
    # over ten times the rows. The first wait brings the short target back.
    # Each batch counts the sessions waiting on its locks just before it
    # commits (pg_locks): any writer that queued behind it is still waiting then.
    calm_batch_seconds: float = 0.5
    calm_seconds: float = 30.0
    # An expression's batch writes its rows before locking them (one WAL
    # record per row saved) unless one of the job's batches in this worker
    # process had to fall back to locking first, because it met a row held by
    # someone else, within this many seconds (engine/expression_fill.py).
    lock_first_seconds: float = 30.0
    # Slices worked at once (Celery tasks in flight) unless a job says otherwise.
    concurrency: int = 2
    # Key-range slices per unit of concurrency: more slices than workers evens
    # out the tail. (A partitioned definition gets one hash share per worker,
    # split on demand instead.)
    slices_per_worker: int = 4
    pause_ms: int = 0
    # Health-aware pacing (backfill/pacing/), on for every job unless it says
    # off: the budgets it keeps each signal under (0: no budget), how often a
    # worker reads them, and the longest pause (how often a job stopped by a
    # signal looks again). The latency ratio is the app's commit latency
    # against the one measured when the job started or resumed.
    pace: bool = True
    max_latency_ratio: float = 2.0
    max_replica_lag_seconds: float = 5.0
    max_transaction_age_seconds: float = 300.0
    max_wal_mb_per_second: float = 0.0
    pace_interval_seconds: float = 1.0
    max_pace_pause_ms: int = 5000
    # Slice bounds are quantiles of the pending keys: read from every pending
    # key when the job's total is an exact count up to this many rows, else
    # from a block sample of about `bounds_sample_rows` pending rows.
    exact_bounds_rows: int = 2_000_000
    bounds_sample_rows: int = 100_000
    # Local to each batch transaction. Well under PostgreSQL's
    # deadlock_timeout (1 s): when a batch and an app transaction wait on each
    # other, the batch gives up first, so the deadlock check never picks the
    # app's transaction as the victim.
    lock_timeout_ms: int = 100
    statement_timeout_ms: int = 15000
    # Consecutive failed attempts before a slice (and its job) fail.
    max_attempts: int = 5
    # Consecutive lock timeouts before a slice (and its job) fail. They are the
    # app's contention, not faults, so they have their own, larger budget:
    # with the backoff growing to its maximum, 30 in a row take three to four
    # minutes in which the batch, at its smallest, could not take its locks.
    max_lock_timeouts: int = 30
    # Before a job succeeds the engine looks for pending rows in its range
    # again and reopens the slices that have some; after this many looks that
    # find rows left behind (pending since the previous look: a fill() that
    # leaves rows empty) the job fails instead of looping. Rows written since
    # (an old app version's inserts) never count (backfill/arrivals.py).
    max_rechecks: int = 10
    # After a look that found rows an old app version inserted, a later look
    # that finds none ends the job only once this long has passed without
    # any: between two of its inserts the data looks finished, and a job
    # ended then would leave the next ones to another job.
    arrivals_quiet_seconds: float = 30.0
    # Passes over a slice that skipped rows another transaction holds; after
    # them the slice retries only those rows, with back-off, and names who
    # holds them, instead of rescanning its range for ever.
    held_row_passes: int = 3
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 10.0
    # A task works one slice this long, then hands over to a continuation.
    task_seconds: float = 15.0
    # A slice whose lease (or dispatch) is older than this is dispatched again.
    lease_seconds: int = 45
    # Batch samples kept per job, for rate, ETA and charts.
    samples_per_job: int = 2000
    # Dotted path of the class that hands slices to workers (engine/dispatch.py).
    dispatcher: str | None = None
    # The statement timeout of the exact count that gives a job its total;
    # past it, the planner's estimate is used and shown as one.
    exact_count_timeout_ms: int = 2000
    # Schema steps (expand, contract, migrate_with_timeouts; schema/gaps.py):
    # each DDL statement waits, without queueing, while a session holds a
    # conflicting lock on its table; then attempts under this lock timeout
    # (what the app can wait behind it at worst), retrying after a jittered
    # back-off starting at `ddl_backoff_seconds`, for at most
    # `ddl_wait_seconds` in all. Ending the sessions in the way, at the end of
    # that wait, only when asked.
    ddl_wait_for_gaps: bool = True
    ddl_lock_timeout_ms: int = 100
    ddl_backoff_seconds: float = 0.1
    ddl_wait_seconds: float = 300.0
    ddl_terminate_blockers: bool = False
    # Bearer token accepted by the JSON API and /metrics besides a session.
    api_token: str | None = None
    # The contract operation may finish at most this many pending rows inline.
    finalize_inline_rows: int = 0


# What each annotated type accepts, and how a refusal names it; a bool is not
# an int here, though Python says it is.
ACCEPTED: dict[object, tuple[tuple[type, ...], str]] = {
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    bool: ((bool,), "True or False"),
    str | None: ((str, type(None)), "a string or None"),
}


def current() -> Settings:
    """The settings now, each checked against its type."""
    values: dict[str, object] = {}
    for spec in fields(Settings):
        name = PREFIX + spec.name.upper()
        if not hasattr(django_settings, name):
            continue
        value: Any = getattr(django_settings, name)
        accepted, kind = ACCEPTED[spec.type]
        if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
            raise ImproperlyConfigured(f"{name} must be {kind}, got {value!r}")
        values[spec.name] = float(cast(float, value)) if spec.type is float else value
    return Settings(**values)  # type: ignore[arg-type]


# Milliseconds PostgreSQL waits before giving up on a lock or a statement.
WAIT_LIMITS = (
    "lock_timeout_ms",
    "statement_timeout_ms",
    "ddl_lock_timeout_ms",
    "exact_count_timeout_ms",
)

# BACKFILL_* names that are not engine settings: read by the workers' beat
# schedule (workers/) and by the latency probe's environment.
ELSEWHERE = frozenset({"BACKFILL_SWEEP_SECONDS", "BACKFILL_PROBE_CONNINFO"})


@register()
def check_settings(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """Refuse wrong settings at startup (`check`, `migrate`; a worker through
    `workers.checks.refuse_wrong_settings`), not inside a batch."""
    try:
        now = current()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="backfill.E001")]
    known = {PREFIX + spec.name.upper() for spec in fields(Settings)} | ELSEWHERE
    found: list[CheckMessage] = [
        Warning(
            f"{name} is not a setting of the engine",
            hint="see backfill/conf.py",
            id="backfill.W002",
        )
        for name in dir(django_settings)
        if name.startswith(PREFIX) and name not in known
    ]
    negative = [
        spec.name
        for spec in fields(Settings)
        if spec.type in (int, float) and getattr(now, spec.name) < 0
    ]
    found += [
        Error(f"{PREFIX}{name.upper()} must not be negative", id="backfill.E001")
        for name in negative
    ]
    # PostgreSQL reads 0 as "no limit": a batch, a schema step or the checker's
    # count would wait on a lock, or run, without end.
    found += [
        Error(
            f"{PREFIX}{name.upper()} must be at least 1 (0 turns the limit off)",
            id="backfill.E001",
        )
        for name in WAIT_LIMITS
        if getattr(now, name) == 0
    ]
    if not 1 <= now.min_batch_size <= now.max_batch_size:
        found.append(
            Error(
                "BACKFILL_MIN_BATCH_SIZE must be at least 1 and at most BACKFILL_MAX_BATCH_SIZE",
                id="backfill.E001",
            )
        )
    if 0 < now.calm_batch_seconds < now.target_batch_seconds:
        found.append(
            Error(
                "BACKFILL_CALM_BATCH_SECONDS must be 0 (off) or at least "
                "BACKFILL_TARGET_BATCH_SECONDS",
                id="backfill.E001",
            )
        )
    return found


@dataclass(frozen=True)
class BatchLimits:
    """The settings a batch runs under, read once per task."""

    min_size: int
    max_size: int
    target_seconds: float
    lock_timeout_ms: int
    statement_timeout_ms: int
    max_attempts: int
    max_lock_timeouts: int
    backoff_seconds: float
    max_backoff_seconds: float
    # The longer target while nobody waited on a batch for `calm_seconds`
    # (0: always `target_seconds`).
    calm_target_seconds: float = 0.0
    calm_seconds: float = 30.0
    lock_first_seconds: float = 30.0

    @classmethod
    def from_settings(cls) -> "BatchLimits":
        now = current()
        return cls(
            min_size=now.min_batch_size,
            max_size=now.max_batch_size,
            target_seconds=now.target_batch_seconds,
            lock_timeout_ms=now.lock_timeout_ms,
            statement_timeout_ms=now.statement_timeout_ms,
            max_attempts=now.max_attempts,
            max_lock_timeouts=now.max_lock_timeouts,
            backoff_seconds=now.backoff_seconds,
            max_backoff_seconds=now.max_backoff_seconds,
            calm_target_seconds=now.calm_batch_seconds,
            calm_seconds=now.calm_seconds,
            lock_first_seconds=now.lock_first_seconds,
        )


@dataclass(frozen=True)
class Budgets:
    """What a job may cost the database; a budget of 0 is no budget."""

    latency_ratio: float  # the app's commit latency against its baseline
    replica_lag_seconds: float
    transaction_age_seconds: float  # the oldest transaction open elsewhere
    wal_mb_per_second: float
