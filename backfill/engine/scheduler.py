"""Which slices run next: keep `concurrency` slices in flight, end finished jobs.

(Fewer while health-aware pacing has shed workers for latency: `Job.workers_writing`.)

The database is the source of truth and the broker only a signal. A slice is
"in flight" while its lease (or its dispatch reservation) has not expired;
this module reserves free slices up to the job's concurrency and dispatches
them once the reservation commits. Called when a job starts, resumes, retries
or reverts, when a worker hands a slice back, and by the sweeper, which is how
lost messages and killed workers are recovered.
"""

import logging
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import F, Sum
from django.utils import timezone

from backfill import arrivals, conf
from backfill.conf import BatchLimits
from backfill.engine import dispatch, display, prune, slicing
from backfill.engine.lifecycle import Action, record, transition
from backfill.faults import describe
from backfill.models import Event, Job, JobStatus, Slice
from backfill.querysets import SliceQuerySet
from backfill.registry import Definition, get_definition
from backfill.statuses import WORKING_STATUSES

logger = logging.getLogger(__name__)


def advance(job_id: int) -> list[int]:
    """Dispatch free slices up to the workers the job may have writing; end it if nothing is left.

    A slice waiting out its pace (a pause of a second or more, a paced stop)
    keeps its worker's slot: it is dispatched now to arrive when its wait
    ends, and no other slice takes the slot meanwhile, since the pause is the
    worker's, between its batches, not the slice's. A slot no free slice can
    take goes to a slice waiting on held rows, likewise dispatched to arrive
    when its wait ends, so the job goes on then, not at the sweeper's next
    round. While a slice waits, no slice is split for a free slot: the slot
    is free because the job waits, not for want of work, and a piece split
    off would be dispatched at once, through the wait.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update(no_key=True).get(pk=job_id)
        if job.status == JobStatus.CANCELLING:
            finish_cancel(job)
            return []
        if job.status not in WORKING_STATUSES:
            return []
        slices = Slice.objects.filter(job=job)
        if not slices.open().exists():
            end(job)
            return []
        now = timezone.now()
        free = max(0, job.workers_writing - slices.open().in_flight(now).count())
        paced = waiting_first(slices.filter(held_keys=[]), now, free)
        free -= len(paced)
        chosen = list(
            slices.open().free(now).order_by("number").values_list("pk", flat=True)[:free]
        )
        if len(chosen) < free and not slices.open().filter(retry_at__gt=now).exists():
            sibling = slicing.split_busiest(job)
            if sibling is not None:
                chosen.append(sibling.pk)
        waking = paced + waiting_first(slices.exclude(held_keys=[]), now, free - len(chosen))
        if not chosen and not waking:
            return []
        reserve(chosen, waking, now)
    if chosen:
        logger.info("job %s: dispatched slices %s", job_id, chosen)
    for pk, retry_at in waking:
        logger.info("job %s: dispatched slice %s to start at %s", job_id, pk, retry_at)
    return chosen + [pk for pk, _ in waking]


def waiting_first(slices: SliceQuerySet, now: datetime, room: int) -> list[tuple[int, datetime]]:
    """Up to `room` slices waiting out a back-off, those whose wait ends first."""
    waiting = slices.open().waiting(now).order_by("retry_at", "number")
    return [
        (pk, retry_at)
        for pk, retry_at in waiting.values_list("pk", "retry_at")[:room]
        if retry_at is not None
    ]


def reserve(chosen: list[int], waking: list[tuple[int, datetime]], now: datetime) -> None:
    """Mark the slices in flight until a worker's lease could have started, and
    dispatch them once that commits (the waking ones to arrive when their wait ends)."""
    lease = timedelta(seconds=conf.current().lease_seconds)
    Slice.objects.filter(pk__in=chosen).update(lease_owner="", lease_expires_at=now + lease)
    for pk, retry_at in waking:
        Slice.objects.filter(pk=pk).update(lease_owner="", lease_expires_at=retry_at + lease)
    dispatcher = dispatch.current()

    def send() -> None:
        for pk in chosen:
            dispatcher.dispatch(pk)
        for pk, retry_at in waking:
            dispatcher.dispatch(pk, delay=(retry_at - now).total_seconds())

    transaction.on_commit(send)


def hand_over(slice_id: int, owner: str, job_id: int, retry_in: float | None = None) -> None:
    """A worker is done with a slice for now: free it and dispatch what comes next.

    A slice that waits (on held rows, or for its pace) is not taken again for
    `retry_in` seconds: unless a free slice takes its worker, it is
    dispatched to arrive then.
    """
    try:
        Slice.objects.release(slice_id, owner, retry_in)
        advance(job_id)
    except DatabaseError as exc:
        # The sweeper will notice the expired lease and carry on.
        connection.close_if_unusable_or_obsolete()
        logger.warning("job %s: hand-over failed: %s", job_id, describe(exc))


def end(job: Job) -> None:
    """No slice is open: a failed slice fails the job, else the phase is complete."""
    failed = Slice.objects.filter(job=job).failed().order_by("number").first()
    if failed is not None:
        transition(
            job, Action.FAIL, "scheduler", failed.failure_summary(BatchLimits.from_settings())
        )
    elif job.status == JobStatus.REVERTING:
        reverted = Slice.objects.filter(job=job).aggregate(total=Sum("rows_reverted"))["total"]
        transition(
            job, Action.FINISH_REVERT, "scheduler", f"{display.count(reverted or 0)} rows reverted"
        )
    else:
        complete_or_extend(job)


def finish_cancel(job: Job) -> None:
    """A cancelling job is cancelled once no worker holds one of its slices."""
    if not Slice.objects.filter(job=job).leased(timezone.now()).exists():
        transition(job, Action.FINISH_CANCEL, "scheduler", "no slice in flight")


# Events after which a pass walked every row then pending: a row still
# pending and written before the latest of them was left behind.
LOOKS = ("start", "retry", "recheck", "arrivals")

# A pending row of a slice's range and share; with `left`, only one written
# before the previous look (it was there, and its pass left it empty) or by
# the job's own batches (its fill wrote NULL there).
PENDING_SQL = (
    "SELECT EXISTS (SELECT 1 FROM {table} WHERE {in_range} AND ({pending}) AND {share} "
    "AND (NOT %(left)s OR " + arrivals.LEFT_BEHIND + "))"
)


# Any pending row at or below the high end of one of the job's slices: one
# scan of the table, where each slice's own test may be one more (a planner
# that expects pending rows everywhere scans the table for the first of each).
# Compared as the key column compares (its type, its collation): some key
# types have no max(), and a text key's collation may not be the default.
ANY_PENDING_SQL = (
    "SELECT EXISTS (SELECT 1 FROM {table} WHERE ({pending}) "
    "AND {key} <= ANY(%(highs)s::{key_type}[]))"
)


def complete_or_extend(job: Job) -> None:
    """All slices are done: look again at the data before the job may succeed.

    Pending rows of the range (an old app version inserted them behind a
    cursor, or a writer emptied them where no guard stops it) reopen their
    slices; rows beyond the range extend its last slice. Only when the data
    shows nothing pending does the job succeed. Rows written since the
    previous look are arrivals: the job keeps up with them as long as they
    come. Rows that were there at the previous look and are pending still
    count against BACKFILL_MAX_RECHECKS: `fill()` leaves them empty.
    """
    definition = get_definition(job.definition)
    look = Event.objects.filter(job=job, action__in=LOOKS).order_by("-id").first()
    again, left = slices_with_pending_rows(job, definition, look)
    high = rows_beyond(job)
    if not again and high is None:
        quiet_at = quiet_after(look)
        if quiet_at is not None and quiet_at > timezone.now():
            look_again_at(job, quiet_at)
            return
        succeed(job, definition)
        return
    if left and out_of_rechecks(job, definition, left):
        return
    extended = slicing.extend_tail(job, definition, high) if high is not None else 0
    Slice.objects.filter(pk__in=again).reopen(cursor=F("after"), passes=F("passes") + 1)
    note_look(job, look, again, left, high, extended)
    transaction.on_commit(lambda: advance(job.pk))


def quiet_after(look: Event | None) -> datetime | None:
    """When an old app version that was inserting at the latest look counts as
    stopped (None: that look found no arrivals)."""
    if look is None or look.action != "arrivals":
        return None
    return look.at + timedelta(seconds=conf.current().arrivals_quiet_seconds)


def look_again_at(job: Job, moment: datetime) -> None:
    """Keep the job running until `moment`, holding nothing: its last slice,
    its cursor left at the end of its range, waits until then, and its empty
    pass ends in another look at the data."""
    last = Slice.objects.filter(job=job).order_by("-number").values_list("pk", flat=True)[:1]
    waiting = Slice.objects.filter(pk__in=list(last))
    waiting.reopen()
    waiting.update(retry_at=moment)
    logger.info("job %s: no arrivals since the last look; looking again at %s", job.pk, moment)
    transaction.on_commit(lambda: advance(job.pk))


def succeed(job: Job, definition: Definition) -> None:
    done = Slice.objects.filter(job=job).rows_done()
    job.rows_total = done
    job.rows_total_is_estimate = False
    job.save(update_fields=["rows_total", "rows_total_is_estimate", "updated_at"])
    label = definition.label
    transition(job, Action.SUCCEED, "scheduler", f"{display.count(done)} rows filled in {label}")
    transaction.on_commit(lambda: prune_older(job))


def prune_older(job: Job) -> None:
    """A job succeeded: older jobs of its backfill can never be reverted, their logs go."""
    try:
        prune.prune(job.definition)
    except DatabaseError as exc:
        # The sweeper prunes them at its next round.
        connection.close_if_unusable_or_obsolete()
        logger.warning("job %s: pruning older write logs failed: %s", job.pk, describe(exc))


def slices_with_pending_rows(
    job: Job, definition: Definition, look: Event | None
) -> tuple[list[int], list[int]]:
    """The slices with pending rows, and those of them with rows left behind
    (all of them when no look is known)."""
    statement = arrivals.compose(definition, PENDING_SQL)
    slices = list(Slice.objects.filter(job=job))
    with connection.cursor() as cursor:
        cursor.execute(definition.compose(ANY_PENDING_SQL), {"highs": [s.high for s in slices]})
        row = cursor.fetchone()
        if not (row and row[0]):
            return [], []
        again = [s for s in slices if has_pending(cursor, statement, s, None)]
        left = [s.pk for s in again if look is None or has_pending(cursor, statement, s, look)]
    return [s.pk for s in again], left


def out_of_rechecks(job: Job, definition: Definition, left: list[int]) -> bool:
    """Fail the job once rows left behind were found again too many times."""
    rechecks = rechecks_since_retry(job)
    if rechecks < conf.current().max_rechecks:
        return False
    detail = (
        f"rows of {definition.label} were still pending after {rechecks} rechecks "
        f"(slices {left}); fill() leaves them empty, or a writer keeps emptying them"
    )
    transition(job, Action.FAIL, "scheduler", detail)
    return True


def note_look(
    job: Job,
    look: Event | None,
    again: list[int],
    left: list[int],
    high: str | None,
    extended: int,
) -> None:
    """Record the look; it is the moment the next one tells arrivals by.

    Looks that found only arrivals are one event, moved to the latest look,
    so an old app version inserting for an hour does not flood the audit.
    """
    where = [f"in {len(again)} slices"] if again else []
    if high is not None:
        where.append(f"past the range ({display.count(extended)} rows, up to key {high})")
    found = " and ".join(where)
    if left:
        record(job, "recheck", "scheduler", f"pending rows found again {found}")
        logger.info("job %s: pending rows found again %s", job.pk, found)
        return
    detail = (
        f"rows written without a value since the last look, {found}: an old app version "
        "is still writing; the job fills them as they arrive"
    )
    if look is not None and look.action == "arrivals":
        Event.objects.filter(pk=look.pk).update(detail=detail, at=timezone.now())
    else:
        record(job, "arrivals", "scheduler", detail)
    logger.info("job %s: rows written without a value since the last look, %s", job.pk, found)


def rechecks_since_retry(job: Job) -> int:
    """The rechecks that count against the budget: those since the job was last
    retried, so a retry once the cause is gone (a fix to fill(), a writer
    stopped) gets the whole budget back instead of failing again at once."""
    events = Event.objects.filter(job=job)
    retried = events.filter(action=Action.RETRY).order_by("-pk").values_list("pk", flat=True)
    return events.filter(action="recheck", pk__gt=retried.first() or 0).count()


def has_pending(cursor: CursorWrapper, statement: str, slc: Slice, look: Event | None) -> bool:
    parameters = {"after": slc.after, "high": slc.high, **slc.share_parameters()}
    left = {"left": look is not None, "event": look.pk if look else None, "job": slc.job_id}
    cursor.execute(statement, {**parameters, **left})
    row = cursor.fetchone()
    return bool(row and row[0])


def rows_beyond(job: Job) -> str | None:
    """The highest key of pending rows past the job's range, if any (index range scan)."""
    if job.key_high is None:
        return None
    definition = get_definition(job.definition)
    statement = definition.compose(
        "SELECT {key}::text FROM {table} WHERE {key} > %s::{key_type} AND ({pending}) "
        "ORDER BY {key} DESC LIMIT 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [job.key_high])
        row = cursor.fetchone()
    return row[0] if row else None
