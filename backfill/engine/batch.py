"""One fill batch is one short transaction.

`run_batch` takes the next pending rows of a slice, locking them first and
skipping rows another transaction holds, lets the definition fill them, and
advances the slice's cursor and counters in the same transaction: progress
never overstates and a crash loses at most the batch in flight. A fill that
is an SQL expression runs on the server alone, and may write its rows before
locking them (engine/expression_fill.py).
"""

import time
from dataclasses import dataclass
from datetime import timedelta

from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from backfill import conf
from backfill.conf import BatchLimits
from backfill.engine import held, write_log
from backfill.engine.candidates import CANDIDATES_SQL, Batch
from backfill.engine.expression_fill import fill_expression
from backfill.models import Sample, Slice, SliceStatus
from backfill.pacing.controller import SpeedLimit
from backfill.registry import Definition, Row
from backfill.transactions import batch_transaction

# A slice prunes its job's old samples every this many batches.
PRUNE_EVERY = 20


@dataclass(frozen=True)
class BatchResult:
    rows_selected: int
    rows_changed: int
    seconds: float
    new_pass: bool
    slice_done: bool
    # Rows another transaction holds are all that is left: retry after back-off.
    held_tries: int = 0
    # Sessions that were waiting on this batch's locks just before it committed.
    waiters: int = 0
    # Writing first met a row held by someone else: it locked first.
    fell_back: bool = False

    @property
    def waiting(self) -> bool:
        return self.held_tries > 0


SELECT_BATCH_SQL = (
    "WITH "
    + CANDIDATES_SQL
    + """,
locked AS (
    SELECT {key} AS backfill_key{columns} FROM {table}
    WHERE {key} = ANY(ARRAY(SELECT backfill_key FROM candidates)) AND ({pending})
    FOR UPDATE SKIP LOCKED
)
SELECT c.backfill_key, l.backfill_key IS NOT NULL{locked_columns}
FROM candidates c LEFT JOIN locked l ON l.backfill_key = c.backfill_key
ORDER BY c.backfill_key
"""
)


def run_batch(
    definition: Definition,
    slice_id: int,
    owner: str,
    size: int,
    limits: BatchLimits,
    pace: SpeedLimit | None = None,
    lock_first: bool = True,
) -> BatchResult:
    """`lock_first=False`: the caller judges a held row unlikely, so an
    expression's batch skips taking its rows' locks before writing them (a WAL
    record per row) and falls back to it if it meets a held row."""
    started = time.monotonic()
    fell_back = False
    with batch_transaction(limits) as cursor:
        slc = Slice.objects.locked_for(slice_id, owner)
        if slc.held_keys:
            selected, filled, new_pass, slice_done = retry_held(cursor, definition, slc, size)
        else:
            if definition.set_expression() is None:
                batch = select_batch(cursor, definition, slc, size)
                filled = fill(cursor, definition, slc, batch.rows)
            else:
                expression_batch = fill_expression(
                    cursor, definition, slc, size, lock_first, limits.lock_timeout_ms
                )
                batch, filled = expression_batch.batch, expression_batch.filled
                fell_back = expression_batch.fell_back
            selected = batch.taken
            new_pass, slice_done = advance_cursor(cursor, definition, slc, batch, size, filled)
        waiters = count_waiters(cursor)
        seconds = time.monotonic() - started
        slc.save()
        record_sample(slc, filled, size, seconds, pace or SpeedLimit())
    held_tries = slc.held_tries if slc.held_keys else 0
    return BatchResult(
        rows_selected=selected,
        rows_changed=filled,
        seconds=seconds,
        new_pass=new_pass,
        slice_done=slice_done,
        held_tries=held_tries,
        waiters=waiters,
        fell_back=fell_back,
    )


# Every session queued behind a lock this transaction holds: a row it locked,
# a name its unique index entry holds, its transaction id. Only the waiting
# locks are handed to pg_blocking_pids (OFFSET 0 keeps the filter first).
WAITERS_SQL = """
SELECT count(DISTINCT w.pid) FROM (
    SELECT pid FROM pg_locks WHERE NOT granted OFFSET 0
) AS w
WHERE pg_backend_pid() = ANY(pg_blocking_pids(w.pid))
"""


def count_waiters(cursor: CursorWrapper) -> int:
    """Sessions waiting on this batch right now. Whoever queued behind it
    since it took its locks is still waiting: they are held until commit."""
    cursor.execute(WAITERS_SQL)
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def fill(cursor: CursorWrapper, definition: Definition, slc: Slice, rows: list[Row]) -> int:
    """The definition fills the locked rows; the write log records what they now hold."""
    if not rows:
        return 0
    filled = definition.fill(cursor, rows)
    write_log.record(cursor, definition, slc.job_id, slc.number, [row[0] for row in rows])
    return filled


def select_batch(cursor: CursorWrapper, definition: Definition, slc: Slice, size: int) -> Batch:
    cursor.execute(
        definition.compose(SELECT_BATCH_SQL),
        {"after": slc.cursor, "high": slc.high, "size": size, **slc.share_parameters()},
    )
    fetched = cursor.fetchall()
    rows = [(key, *rest) for key, locked, *rest in fetched if locked]
    return Batch(
        rows=rows,
        skipped=len(fetched) - len(rows),
        candidates=len(fetched),
        last_key=str(fetched[-1][0]) if fetched else None,
        taken=len(rows),
    )


def advance_cursor(
    cursor: CursorWrapper,
    definition: Definition,
    slc: Slice,
    batch: Batch,
    size: int,
    filled: int,
) -> tuple[bool, bool]:
    """Move the cursor; at the end of a pass, finish, start over for skipped rows,
    or, after enough passes, keep only the rows still held and wait for them."""
    slc.rows_done += filled
    slc.rows_skipped += batch.skipped
    count_success(slc, size)
    if batch.candidates == size and batch.last_key is not None:
        slc.cursor = batch.last_key
        return False, False
    if slc.rows_skipped:
        slc.rows_skipped = 0
        if slc.passes >= conf.current().held_row_passes:
            slc.held_keys = held.pending_keys(cursor, definition, slc)
        if slc.held_keys:
            slc.cursor = slc.high
            return False, False
        slc.cursor = slc.after
        slc.passes += 1
        return True, False
    slc.cursor = slc.high
    slc.status = SliceStatus.DONE
    return False, True


def retry_held(
    cursor: CursorWrapper, definition: Definition, slc: Slice, size: int
) -> tuple[int, int, bool, bool]:
    """Fill whichever held rows can be locked now; note who still holds the rest."""
    rows = held.lock_held(cursor, definition, slc)
    filled = fill(cursor, definition, slc, rows)
    taken = {str(row[0]) for row in rows}
    slc.held = held.holders(cursor, definition, [k for k in slc.held_keys if k not in taken])
    slc.held_keys = [row["key"] for row in slc.held]
    slc.held_tries = slc.held_tries + 1 if slc.held_keys else 0
    slc.rows_done += filled
    count_success(slc, size)
    if slc.held_keys:
        return len(rows), filled, False, False
    if held.pending_keys(cursor, definition, slc, limit=1):
        # More rows were pending than the slice keeps: a pass for the rest.
        slc.cursor = slc.after
        slc.passes += 1
        return len(rows), filled, True, False
    slc.status = SliceStatus.DONE
    return len(rows), filled, False, True


def count_success(slc: Slice, size: int) -> None:
    """A committed batch: budgets back to full, the lease renewed, the size kept."""
    slc.batches += 1
    slc.attempts = 0
    slc.lock_timeouts = 0
    slc.batch_size = size
    slc.lease_expires_at = timezone.now() + timedelta(seconds=conf.current().lease_seconds)


def record_sample(slc: Slice, rows: int, size: int, seconds: float, pace: SpeedLimit) -> None:
    Sample.objects.create(
        job_id=slc.job_id,
        slice_number=slc.number,
        rows=rows,
        batch_size=size,
        duration_ms=seconds * 1000,
        pause_ms=pace.pause_ms,
        limit=pace.limit,
    )
    if slc.batches % PRUNE_EVERY == 0:
        prune_samples(slc.job_id)


def prune_samples(job_id: int) -> None:
    keep = conf.current().samples_per_job
    boundary = (
        Sample.objects.filter(job_id=job_id)
        .order_by("-id")
        .values_list("id", flat=True)[keep : keep + 1]
    )
    if boundary:
        Sample.objects.filter(job_id=job_id, id__lte=boundary[0]).delete()
