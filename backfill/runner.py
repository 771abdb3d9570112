"""One batch is one short transaction; a slice is worked batch after batch.

`run_batch` locks the next pending rows of a slice (skipping rows another
transaction holds), lets the definition fill them, and advances the slice's
cursor and counters in the same transaction: progress never overstates and a
crash loses at most the batch in flight. `work_slice` is the loop around it:
lease, throttle, retry, hand over.
"""

import enum
import logging
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import DatabaseError, connection, reset_queries, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import F, Q
from django.utils import timezone
from psycopg import sql

from backfill import conf, scheduler
from backfill.conf import BatchLimits
from backfill.models import Job, JobStatus, Sample, Slice, SliceStatus
from backfill.registry import Definition, Row, get_definition
from backfill.state import transition
from backfill.throttle import BatchSizer, backoff_seconds

logger = logging.getLogger(__name__)

# A slice prunes its job's old samples every this many batches.
PRUNE_EVERY = 20


class LeaseLost(Exception):
    """Another worker owns the slice now; this one must stop touching it."""


class Outcome(enum.StrEnum):
    CONTINUED = "continued"  # time budget used; a continuation was dispatched
    FINISHED = "finished"  # the slice is done
    STOPPED = "stopped"  # the job is no longer running (paused, cancelling)
    FAILED = "failed"  # the slice ran out of attempts
    NOT_ACQUIRED = "not_acquired"  # duplicate delivery, or nothing to do


@dataclass(frozen=True)
class BatchResult:
    rows_selected: int
    rows_filled: int
    rows_skipped: int
    seconds: float
    batch_size: int
    new_pass: bool
    slice_done: bool


@dataclass(frozen=True)
class Batch:
    """What the locking select returned: rows to fill, and where the pass is."""

    rows: list[Row] = field(default_factory=list)
    skipped: int = 0
    candidates: int = 0
    last_key: int | None = None


# Candidates are the next `size` pending keys of the slice in key order (read
# from the snapshot, so rows held by the app are seen too); of these, the rows
# that can be locked right now are locked and returned with their columns. The
# pending condition is checked again under the lock, so a row filled meanwhile
# is left alone. Unlockable candidates come back with locked = false, and the
# slice makes another pass for them later.
SELECT_BATCH_SQL = """
WITH candidates AS (
    SELECT {key} AS key FROM {table}
    WHERE {key} > %(cursor)s AND {key} <= %(high)s AND ({pending})
    ORDER BY {key}
    LIMIT %(size)s
),
locked AS (
    SELECT {key} AS key{columns} FROM {table}
    WHERE {key} IN (SELECT key FROM candidates) AND ({pending})
    FOR UPDATE SKIP LOCKED
)
SELECT c.key, l.key IS NOT NULL{locked_columns}
FROM candidates c LEFT JOIN locked l ON l.key = c.key
ORDER BY c.key
"""


def select_batch_sql(definition: Definition) -> str:
    read = definition.read_columns()
    return (
        sql.SQL(SELECT_BATCH_SQL)
        .format(
            key=sql.Identifier(definition.key_column),
            table=sql.Identifier(definition.table),
            pending=definition.pending_condition(),
            columns=sql.SQL("").join(sql.SQL(", ") + sql.Identifier(c) for c in read),
            locked_columns=sql.SQL("").join(sql.SQL(", l.") + sql.Identifier(c) for c in read),
        )
        .as_string()
    )


def set_batch_limits(cursor: CursorWrapper, limits: BatchLimits) -> None:
    """Local to the batch transaction. JIT is off: its compile time dwarfs a batch."""
    cursor.execute(
        "SELECT set_config('lock_timeout', %s, true), "
        "set_config('statement_timeout', %s, true), set_config('jit', 'off', true)",
        [f"{limits.lock_timeout_ms}ms", f"{limits.statement_timeout_ms}ms"],
    )


def select_batch(cursor: CursorWrapper, definition: Definition, slc: Slice, size: int) -> Batch:
    cursor.execute(
        select_batch_sql(definition), {"cursor": slc.cursor, "high": slc.high, "size": size}
    )
    fetched = cursor.fetchall()
    rows = [(key, *rest) for key, locked, *rest in fetched if locked]
    return Batch(
        rows=rows,
        skipped=len(fetched) - len(rows),
        candidates=len(fetched),
        last_key=fetched[-1][0] if fetched else None,
    )


def run_batch(
    definition: Definition, slice_id: int, owner: str, size: int, limits: BatchLimits
) -> BatchResult:
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        set_batch_limits(cursor, limits)
        slc = Slice.objects.select_for_update().get(pk=slice_id)
        if slc.lease_owner != owner or slc.status != SliceStatus.RUNNING:
            raise LeaseLost(f"slice {slice_id} is leased by {slc.lease_owner or 'nobody'}")
        batch = select_batch(cursor, definition, slc, size)
        filled = definition.fill(cursor, batch.rows) if batch.rows else 0
        new_pass, done = advance(slc, batch, size, filled)
        elapsed = time.monotonic() - started
        slc.save()
        Sample.objects.create(
            job_id=slc.job_id,
            slice_number=slc.number,
            rows=filled,
            batch_size=size,
            duration_ms=elapsed * 1000,
        )
        if slc.batches % PRUNE_EVERY == 0:
            prune_samples(slc.job_id)
    return BatchResult(
        rows_selected=len(batch.rows),
        rows_filled=filled,
        rows_skipped=batch.skipped,
        seconds=time.monotonic() - started,
        batch_size=size,
        new_pass=new_pass,
        slice_done=done,
    )


def advance(slc: Slice, batch: Batch, size: int, filled: int) -> tuple[bool, bool]:
    """Move the cursor; at the end of a pass, finish or start over for skipped rows."""
    slc.rows_done += filled
    slc.batches += 1
    slc.attempts = 0
    slc.lock_timeouts = 0
    slc.batch_size = size
    slc.rows_skipped += batch.skipped
    slc.lease_expires_at = timezone.now() + timedelta(
        seconds=conf.get_int("BACKFILL_LEASE_SECONDS")
    )
    if batch.candidates == size and batch.last_key is not None:
        slc.cursor = batch.last_key
        return False, False
    if slc.rows_skipped:
        slc.cursor = slc.low - 1
        slc.rows_skipped = 0
        slc.passes += 1
        return True, False
    slc.cursor = slc.high
    slc.status = SliceStatus.DONE
    return False, True


def prune_samples(job_id: int) -> None:
    keep = conf.get_int("BACKFILL_SAMPLES_PER_JOB")
    boundary = (
        Sample.objects.filter(job_id=job_id)
        .order_by("-id")
        .values_list("id", flat=True)[keep : keep + 1]
    )
    if boundary:
        Sample.objects.filter(job_id=job_id, id__lte=boundary[0]).delete()


def acquire(slice_id: int, owner: str) -> Slice | None:
    """Take the slice's lease if it is free (or expired) and its job is running.

    Attempts go up with every acquisition and back to zero with every committed
    batch, so a batch that kills its worker outright still fails the slice
    after BACKFILL_MAX_ATTEMPTS deliveries instead of looping for ever.
    """
    now = timezone.now()
    taken = (
        Slice.objects.filter(
            pk=slice_id,
            status__in=[SliceStatus.PENDING, SliceStatus.RUNNING],
            job__status=JobStatus.RUNNING,
        )
        .filter(Q(lease_owner="") | Q(lease_expires_at__lt=now))
        .update(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=conf.get_int("BACKFILL_LEASE_SECONDS")),
            status=SliceStatus.RUNNING,
            attempts=F("attempts") + 1,
        )
    )
    if not taken:
        return None
    return Slice.objects.select_related("job").get(pk=slice_id)


def release(slice_id: int, owner: str) -> None:
    Slice.objects.filter(pk=slice_id, lease_owner=owner).update(
        lease_owner="", lease_expires_at=None
    )


@dataclass(frozen=True)
class Failure:
    """One failed batch, as the slice records it.

    `attempt` is what it adds to the slice's attempts: 1 for a fault, 0 for the
    first fault after taking the lease (taking it already counted, in case the
    worker died instead), -1 for contention right after taking it (the worker
    is alive and nothing failed, so that count is given back). `next_size` is
    stored so a continuation does not start again at the size that failed.
    """

    error: str
    attempt: int = 1
    lock_timeout: bool = False
    next_size: int | None = None


def record_failure(slice_id: int, owner: str, failure: Failure, limits: BatchLimits) -> Slice:
    """Record a failed batch; fail the slice and its job when either budget runs out."""
    with transaction.atomic():
        slc = Slice.objects.select_for_update().get(pk=slice_id)
        if slc.lease_owner != owner:
            raise LeaseLost(f"slice {slice_id} was taken over while failing")
        slc.attempts = max(0, slc.attempts + failure.attempt)
        slc.lock_timeouts = slc.lock_timeouts + 1 if failure.lock_timeout else 0
        slc.failed_batches += 1
        slc.last_error = failure.error
        if failure.next_size is not None:
            slc.batch_size = failure.next_size
        if out_of_budget(slc, limits):
            slc.status = SliceStatus.FAILED
        slc.save(
            update_fields=[
                "attempts",
                "lock_timeouts",
                "failed_batches",
                "last_error",
                "batch_size",
                "status",
                "updated_at",
            ]
        )
    if slc.status == SliceStatus.FAILED:
        fail_job(slc, failure.error, limits)
    return slc


def out_of_budget(slc: Slice, limits: BatchLimits) -> bool:
    return slc.attempts >= limits.max_attempts or slc.lock_timeouts >= limits.max_lock_timeouts


def fail_job(slc: Slice, error: str, limits: BatchLimits) -> None:
    job = Job.objects.get(pk=slc.job_id)
    if job.status in (JobStatus.RUNNING, JobStatus.PENDING):
        first_line = error.splitlines()[0] if error else "unknown error"
        if slc.lock_timeouts >= limits.max_lock_timeouts:
            why = (
                f"{slc.lock_timeouts} lock timeouts in a row at {slc.batch_size} rows "
                "(another transaction keeps holding locks its batches need)"
            )
        else:
            why = f"{slc.attempts} attempts"
        detail = f"slice {slc.number} failed after {why}: {first_line}"
        transition(job.pk, JobStatus.FAILED, "worker", "fail", detail)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip()}"


def with_traceback(exc: BaseException) -> str:
    """The one-line description, then the traceback (folded on the dashboard)."""
    trace = "".join(traceback.format_exception(exc)).strip()
    return f"{describe(exc)}\n\n{trace}"


@dataclass
class SliceWork:
    """The state of one task working one slice."""

    slice_id: int
    owner: str
    budget_seconds: float
    limits: BatchLimits = field(default_factory=BatchLimits.from_settings)
    # True from taking the lease until the first batch ends: that attempt is counted.
    attempt_counted: bool = False

    def run(self) -> Outcome:
        slc = acquire(self.slice_id, self.owner)
        if slc is None:
            return Outcome.NOT_ACQUIRED
        self.attempt_counted = True
        log = logging.LoggerAdapter(logger, {"job": slc.job_id, "slice": slc.number})
        if slc.attempts > self.limits.max_attempts:
            log.error(
                "job %s slice %s: giving up after %s deliveries",
                slc.job_id,
                slc.number,
                slc.attempts,
            )
            record_failure(
                self.slice_id,
                self.owner,
                Failure("the worker died during every attempt"),
                self.limits,
            )
            return Outcome.FAILED
        outcome = Outcome.CONTINUED
        try:
            outcome = self.loop(slc, log)
        except LeaseLost:
            log.warning("job %s slice %s: lease lost", slc.job_id, slc.number)
            return Outcome.NOT_ACQUIRED
        finally:
            if outcome != Outcome.NOT_ACQUIRED:
                self.hand_over(slc.job_id)
        return outcome

    def loop(self, slc: Slice, log: logging.LoggerAdapter[logging.Logger]) -> Outcome:
        definition = get_definition(slc.job.definition)
        sizer = BatchSizer(self.limits)
        size = sizer.clamp(slc.batch_size)
        deadline = time.monotonic() + self.budget_seconds
        pause = slc.job.pause_ms / 1000
        while time.monotonic() < deadline:
            # With DEBUG on, Django keeps the last 9,000 statements with their
            # parameters (a batch's names) and only a web request clears them.
            reset_queries()
            try:
                # Inside the try: a connection lost while idle fails here first.
                if (
                    Job.objects.values_list("status", flat=True).get(pk=slc.job_id)
                    != JobStatus.RUNNING
                ):
                    return Outcome.STOPPED
                result = run_batch(definition, self.slice_id, self.owner, size, self.limits)
            except LeaseLost:
                raise
            except Exception as exc:
                size = self.after_failure(exc, size, sizer, log, slc)
                if size == 0:
                    return Outcome.FAILED
                continue
            self.attempt_counted = False
            log.debug(
                "job %s slice %s: %s rows in %.3fs (size %s)",
                slc.job_id,
                slc.number,
                result.rows_filled,
                result.seconds,
                size,
            )
            if result.slice_done:
                return Outcome.FINISHED
            size = sizer.next_size(size, result.rows_selected, result.seconds)
            if result.new_pass:
                time.sleep(backoff_seconds(self.limits, 1))
            if pause:
                time.sleep(pause)
        return Outcome.CONTINUED

    def after_failure(
        self,
        exc: Exception,
        size: int,
        sizer: BatchSizer,
        log: logging.LoggerAdapter[logging.Logger],
        slc: Slice,
    ) -> int:
        """Record the failure and back off; the next size, or 0 when the slice failed.

        Waiting on the app's locks is contention, not a fault: the batch is
        retried at half the size (fewer rows for the app to queue behind) and
        spends none of the slice's attempts, only its budget of lock timeouts.
        """
        connection.close_if_unusable_or_obsolete()
        log.warning("job %s slice %s: batch failed: %s", slc.job_id, slc.number, describe(exc))
        contention = is_lock_timeout(exc)
        timed_out = contention or is_statement_timeout(exc)
        next_size = sizer.after_timeout(size) if timed_out else size
        if contention:
            attempt = -1 if self.attempt_counted else 0
        else:
            attempt = 0 if self.attempt_counted else 1
        self.attempt_counted = False
        failure = Failure(with_traceback(exc), attempt, contention, next_size)
        try:
            recorded = record_failure(self.slice_id, self.owner, failure, self.limits)
        except DatabaseError as record_exc:
            connection.close_if_unusable_or_obsolete()
            log.warning(
                "job %s slice %s: could not record failure: %s",
                slc.job_id,
                slc.number,
                describe(record_exc),
            )
            time.sleep(backoff_seconds(self.limits, 1))
            return next_size
        if recorded.status == SliceStatus.FAILED:
            return 0
        tries = recorded.lock_timeouts if contention else recorded.attempts
        time.sleep(backoff_seconds(self.limits, tries))
        return next_size

    def hand_over(self, job_id: int) -> None:
        """Release the lease and let the scheduler dispatch whatever comes next."""
        try:
            release(self.slice_id, self.owner)
            scheduler.fill_slots(job_id)
        except DatabaseError as exc:
            # The sweeper will notice the expired lease and carry on.
            connection.close_if_unusable_or_obsolete()
            logger.warning("job %s: hand-over failed: %s", job_id, describe(exc))


def is_statement_timeout(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == "57014"


def is_lock_timeout(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == "55P03"


def work_slice(slice_id: int, owner: str, budget_seconds: float | None = None) -> Outcome:
    """Entry point for workers: work one slice for a bounded time."""
    budget = (
        budget_seconds if budget_seconds is not None else conf.get_float("BACKFILL_TASK_SECONDS")
    )
    return SliceWork(slice_id, owner, budget).run()
