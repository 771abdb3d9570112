"""Which slices run next: keep `concurrency` slices in flight, finish jobs.

The database is the source of truth and the broker only a signal. A slice is
"in flight" while its lease (or its dispatch reservation) has not expired;
this module reserves free slices up to the job's concurrency and dispatches
them once the reservation commits. Called when a job starts or resumes, when a
task hands over, and by the sweeper, which is how lost messages and killed
workers are recovered.
"""

import logging
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from psycopg import sql

from backfill import conf, dispatch
from backfill.models import Job, JobStatus, Slice, SliceStatus
from backfill.registry import get_definition
from backfill.state import transition

logger = logging.getLogger(__name__)

OPEN = (SliceStatus.PENDING, SliceStatus.RUNNING)


def fill_slots(job_id: int) -> list[int]:
    """Dispatch free slices up to the job's concurrency; finish the job if it is done."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status == JobStatus.CANCELLING:
            finish_cancel(job)
            return []
        if job.status != JobStatus.RUNNING:
            return []
        open_slices = Slice.objects.filter(job=job, status__in=OPEN)
        if not open_slices.exists():
            if not Slice.objects.filter(job=job, status=SliceStatus.FAILED).exists():
                complete_or_extend(job)
            return []
        now = timezone.now()
        in_flight = open_slices.filter(lease_expires_at__gt=now).count()
        free = max(0, job.concurrency - in_flight)
        chosen = list(
            open_slices.filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
            .order_by("number")
            .values_list("pk", flat=True)[:free]
        )
        if not chosen:
            return []
        expiry = now + timedelta(seconds=conf.get_int("BACKFILL_LEASE_SECONDS"))
        Slice.objects.filter(pk__in=chosen).update(lease_owner="", lease_expires_at=expiry)
        dispatcher = dispatch.current()

        def send() -> None:
            for pk in chosen:
                dispatcher.dispatch(pk)

        transaction.on_commit(send)
    logger.info("job %s: dispatched slices %s", job_id, chosen)
    return chosen


def finish_cancel(job: Job) -> None:
    """A cancelling job is cancelled once no worker holds one of its slices."""
    busy = Slice.objects.filter(job=job, lease_expires_at__gt=timezone.now()).exclude(
        lease_owner=""
    )
    if not busy.exists():
        transition(job.pk, JobStatus.CANCELLED, "scheduler", "cancelled", "no slice in flight")


def complete_or_extend(job: Job) -> None:
    """All slices are done: cover rows that appeared beyond the range, or succeed."""
    definition = get_definition(job.definition)
    high = rows_beyond(job)
    if high is not None:
        assert job.key_high is not None
        number = Slice.objects.filter(job=job).count()
        Slice.objects.create(
            job=job,
            number=number,
            low=job.key_high + 1,
            high=high,
            cursor=job.key_high,
            batch_size=conf.get_int("BACKFILL_BATCH_SIZE"),
        )
        job.key_high = high
        job.save(update_fields=["key_high", "updated_at"])
        logger.info("job %s: extended to key %s for rows added since start", job.pk, high)
        transaction.on_commit(lambda: fill_slots(job.pk))
        return
    done = sum(Slice.objects.filter(job=job).values_list("rows_done", flat=True))
    job.rows_total = done
    job.rows_total_is_estimate = False
    job.save(update_fields=["rows_total", "rows_total_is_estimate", "updated_at"])
    transition(
        job.pk,
        JobStatus.SUCCEEDED,
        "scheduler",
        "succeed",
        f"{done} rows filled in {definition.label}",
    )


def rows_beyond(job: Job) -> int | None:
    """The highest key of pending rows past the job's range, if any (index range scan)."""
    if job.key_high is None:
        return None
    definition = get_definition(job.definition)
    statement = sql.SQL("SELECT max({key}) FROM {table} WHERE {key} > %s AND ({pending})").format(
        key=sql.Identifier(definition.key_column),
        table=sql.Identifier(definition.table),
        pending=definition.pending_condition(),
    )
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(), [job.key_high])
        row = cursor.fetchone()
    return row[0] if row else None
