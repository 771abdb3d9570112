"""Every BACKFILL_* setting, its default, and the only place that reads them.

Override any of them in Django settings; values are read at call time so tests
can change them with pytest-django's `settings` fixture.
"""

from dataclasses import dataclass

from django.conf import settings

DEFAULTS: dict[str, object] = {
    # Rows per batch at the start of a job; the throttle then adapts it.
    "BACKFILL_BATCH_SIZE": 1000,
    "BACKFILL_MIN_BATCH_SIZE": 50,
    "BACKFILL_MAX_BATCH_SIZE": 20000,
    # The batch size adapts toward this duration: long enough to amortise the
    # commit, short enough that an app write queued behind a locked row waits
    # less than this. At 0.2 s the benchmark's app saw lock waits past 500 ms
    # (a slow first batch, a pass over skipped rows); at 0.05 s it stays near
    # 150 ms, for about 15% fewer rows per second (docs/benchmarks.md).
    "BACKFILL_TARGET_BATCH_SECONDS": 0.05,
    # Slices worked at once (Celery tasks in flight) unless a job says otherwise.
    "BACKFILL_CONCURRENCY": 2,
    # Key-range slices per unit of concurrency: more slices than workers evens out
    # the tail. (A partitioned definition gets one hash share per worker, split
    # on demand instead.)
    "BACKFILL_SLICES_PER_WORKER": 4,
    "BACKFILL_PAUSE_MS": 0,
    # Health-aware pacing (pacing.py), on for every job unless it says off:
    # the budgets it keeps each signal under (0: no budget), how often a
    # worker reads them, and the longest pause (how often a job stopped by a
    # signal looks again). The latency ratio is the app's commit latency
    # against the one measured when the job started or resumed.
    "BACKFILL_PACE": True,
    "BACKFILL_MAX_LATENCY_RATIO": 2.0,
    "BACKFILL_MAX_REPLICA_LAG_SECONDS": 5.0,
    "BACKFILL_MAX_TRANSACTION_AGE_SECONDS": 300.0,
    "BACKFILL_MAX_WAL_MB_PER_SECOND": 0.0,
    "BACKFILL_PACE_INTERVAL_SECONDS": 1.0,
    "BACKFILL_MAX_PACE_PAUSE_MS": 5000,
    # Slice bounds are quantiles of the pending keys: read from every pending
    # key when the job's total is an exact count up to this many rows, else
    # from a block sample of about BACKFILL_BOUNDS_SAMPLE_ROWS pending rows.
    "BACKFILL_EXACT_BOUNDS_ROWS": 2_000_000,
    "BACKFILL_BOUNDS_SAMPLE_ROWS": 100_000,
    # Local to each batch transaction.
    # Well under PostgreSQL's deadlock_timeout (1 s): when a batch and an app
    # transaction wait on each other, the batch gives up first, so the
    # deadlock check never picks the app's transaction as the victim.
    "BACKFILL_LOCK_TIMEOUT_MS": 100,
    "BACKFILL_STATEMENT_TIMEOUT_MS": 15000,
    # Consecutive failed attempts before a slice (and its job) fail.
    "BACKFILL_MAX_ATTEMPTS": 5,
    # Consecutive lock timeouts before a slice (and its job) fail. They are the
    # app's contention, not faults, so they have their own, larger budget:
    # with the backoff growing to its maximum, 30 in a row take three to four
    # minutes in which the batch, at its smallest, could not take its locks.
    "BACKFILL_MAX_LOCK_TIMEOUTS": 30,
    # Before a job succeeds the engine looks for pending rows in its range
    # again and reopens the slices that have some; after this many such
    # rechecks the job fails instead of looping (a fill() that leaves rows
    # empty, or a writer that keeps emptying them).
    "BACKFILL_MAX_RECHECKS": 10,
    # Passes over a slice that skipped rows another transaction holds; after
    # them the slice retries only those rows, with back-off, and names who
    # holds them, instead of rescanning its range for ever.
    "BACKFILL_HELD_ROW_PASSES": 3,
    "BACKFILL_BACKOFF_SECONDS": 0.5,
    "BACKFILL_MAX_BACKOFF_SECONDS": 10.0,
    # A task works one slice this long, then hands over to a continuation.
    "BACKFILL_TASK_SECONDS": 15.0,
    # A slice whose lease (or dispatch) is older than this is dispatched again.
    "BACKFILL_LEASE_SECONDS": 45,
    # Batch samples kept per job, for rate, ETA and charts.
    "BACKFILL_SAMPLES_PER_JOB": 2000,
    # Dotted path of the class that hands slices to workers (see dispatch.py).
    "BACKFILL_DISPATCHER": None,
    # Below this many pending rows an exact count is run to get the job total.
    "BACKFILL_EXACT_COUNT_TIMEOUT_MS": 2000,
    # Schema steps (expand, contract, migrate_with_timeouts; see ddl.py): each
    # DDL statement waits, without queueing, while a session holds a
    # conflicting lock on its table; then attempts under this lock timeout
    # (what the app can wait behind it at worst), retrying after a jittered
    # back-off starting at BACKFILL_DDL_BACKOFF_SECONDS, for at most
    # BACKFILL_DDL_WAIT_SECONDS in all. Ending the sessions in the way, at the
    # end of that wait, only when asked.
    "BACKFILL_DDL_WAIT_FOR_GAPS": True,
    "BACKFILL_DDL_LOCK_TIMEOUT_MS": 100,
    "BACKFILL_DDL_BACKOFF_SECONDS": 0.1,
    "BACKFILL_DDL_WAIT_SECONDS": 300,
    "BACKFILL_DDL_TERMINATE_BLOCKERS": False,
    # Bearer token accepted by the JSON API and /metrics besides a staff session.
    "BACKFILL_API_TOKEN": None,
    # The contract operation may finish at most this many pending rows inline.
    "BACKFILL_FINALIZE_INLINE_ROWS": 0,
}


def get(name: str) -> object:
    return getattr(settings, name, DEFAULTS[name])


def get_int(name: str) -> int:
    value = get(name)
    assert isinstance(value, int), f"{name} must be an integer"
    return value


def get_bool(name: str) -> bool:
    value = get(name)
    assert isinstance(value, bool), f"{name} must be True or False"
    return value


def get_float(name: str) -> float:
    value = get(name)
    assert isinstance(value, int | float), f"{name} must be a number"
    return float(value)


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

    @classmethod
    def from_settings(cls) -> "BatchLimits":
        return cls(
            min_size=get_int("BACKFILL_MIN_BATCH_SIZE"),
            max_size=get_int("BACKFILL_MAX_BATCH_SIZE"),
            target_seconds=get_float("BACKFILL_TARGET_BATCH_SECONDS"),
            lock_timeout_ms=get_int("BACKFILL_LOCK_TIMEOUT_MS"),
            statement_timeout_ms=get_int("BACKFILL_STATEMENT_TIMEOUT_MS"),
            max_attempts=get_int("BACKFILL_MAX_ATTEMPTS"),
            max_lock_timeouts=get_int("BACKFILL_MAX_LOCK_TIMEOUTS"),
            backoff_seconds=get_float("BACKFILL_BACKOFF_SECONDS"),
            max_backoff_seconds=get_float("BACKFILL_MAX_BACKOFF_SECONDS"),
        )
