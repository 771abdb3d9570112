"""The actions on backfills: one entry point each, shared by every interface.

The CLI, the dashboard and the contract migration call these functions and
never change jobs or slices themselves.
"""

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from backfill import conf, dispatch, scheduler
from backfill.checker import estimate_pending
from backfill.conf import BatchLimits
from backfill.errors import ActiveJobExists, BackfillError, InvalidTransition, NoJob
from backfill.models import ACTIVE_STATUSES, Job, JobStatus, Slice, SliceStatus
from backfill.progress import Progress, job_progress
from backfill.registry import Definition, get_definition
from backfill.runner import set_batch_limits, work_slice
from backfill.state import FINISHED, record, transition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOptions:
    """What a user may choose when starting a job; validated before anything runs."""

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
        options = cls(
            batch_size=batch_size
            if batch_size is not None
            else conf.get_int("BACKFILL_BATCH_SIZE"),
            concurrency=concurrency
            if concurrency is not None
            else conf.get_int("BACKFILL_CONCURRENCY"),
            pause_ms=pause_ms if pause_ms is not None else conf.get_int("BACKFILL_PAUSE_MS"),
        )
        options.validate()
        return options

    def validate(self) -> None:
        limits = BatchLimits.from_settings()
        if not limits.min_size <= self.batch_size <= limits.max_size:
            raise BackfillError(
                f"batch size must be between {limits.min_size} and {limits.max_size}, "
                f"got {self.batch_size}"
            )
        if not 1 <= self.concurrency <= 64:
            raise BackfillError(f"concurrency must be between 1 and 64, got {self.concurrency}")
        if not 0 <= self.pause_ms <= 60_000:
            raise BackfillError(f"pause must be between 0 and 60000 ms, got {self.pause_ms}")


def key_range(definition: Definition) -> tuple[int | None, int | None]:
    bounds = definition.model._default_manager.aggregate(low=Min("pk"), high=Max("pk"))
    return bounds["low"], bounds["high"]


def split(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """Disjoint, contiguous key ranges covering [low, high]."""
    span = high - low + 1
    parts = max(1, min(parts, span))
    step = span // parts
    bounds = [low + i * step for i in range(parts)] + [high + 1]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(parts)]


def start(name: str, actor: str, options: JobOptions | None = None) -> Job:
    """Create a job over the whole table and dispatch its first slices."""
    definition = get_definition(name)
    options = options or JobOptions.build()
    dispatch.current()  # fail before creating anything if nothing can run it
    try:
        with transaction.atomic():
            job = create_job(definition, actor, options)
    except IntegrityError:
        raise ActiveJobExists(already_active_message(name)) from None
    scheduler.fill_slots(job.pk)
    job.refresh_from_db()
    return job


def already_active_message(name: str) -> str:
    job = Job.objects.filter(definition=name, status__in=ACTIVE_STATUSES).first()
    which = f"job #{job.pk} is {job.status}" if job else "another job is active"
    return f"backfill {name!r} already has an active job ({which}); pause, resume or cancel it"


def create_job(definition: Definition, actor: str, options: JobOptions) -> Job:
    if Job.objects.filter(definition=definition.name, status__in=ACTIVE_STATUSES).exists():
        raise ActiveJobExists(already_active_message(definition.name))
    low, high = key_range(definition)
    total = estimate_pending(definition)
    with connection.cursor() as cursor:
        context = definition.prepare(cursor)
    job = Job.objects.create(
        definition=definition.name,
        batch_size=options.batch_size,
        concurrency=options.concurrency,
        pause_ms=options.pause_ms,
        key_low=low,
        key_high=high,
        rows_total=total.rows,
        rows_total_is_estimate=total.is_estimate,
        context=context,
        created_by=actor,
    )
    record(
        job, "start", actor, f"batch size {options.batch_size}, concurrency {options.concurrency}"
    )
    if low is not None and high is not None:
        parts = options.concurrency * conf.get_int("BACKFILL_SLICES_PER_WORKER")
        Slice.objects.bulk_create(
            Slice(job=job, number=i, low=lo, high=hi, cursor=lo - 1, batch_size=options.batch_size)
            for i, (lo, hi) in enumerate(split(low, high, parts))
        )
    return transition(job.pk, JobStatus.RUNNING, actor, "run")


def active_job(name: str) -> Job:
    get_definition(name)
    job = Job.objects.filter(definition=name, status__in=ACTIVE_STATUSES).first()
    if job is None:
        raise NoJob(f"backfill {name!r} has no active job")
    return job


def latest_job(name: str) -> Job:
    get_definition(name)
    job = Job.objects.filter(definition=name).order_by("-id").first()
    if job is None:
        raise NoJob(
            f"backfill {name!r} has never run; start it with `manage.py backfill start {name}`"
        )
    return job


def pause(name: str, actor: str) -> Job:
    return transition(active_job(name).pk, JobStatus.PAUSED, actor, "pause")


def resume(name: str, actor: str) -> Job:
    job = latest_job(name)
    if job.status != JobStatus.PAUSED:
        raise InvalidTransition(
            f"cannot resume {name} job #{job.pk}: it is {job.status}, not paused"
        )
    job = transition(job.pk, JobStatus.RUNNING, actor, "resume")
    scheduler.fill_slots(job.pk)
    return job


def cancel(name: str, actor: str) -> Job:
    job = active_job(name)
    if job.status == JobStatus.RUNNING:
        job = transition(job.pk, JobStatus.CANCELLING, actor, "cancel")
        scheduler.fill_slots(job.pk)
        job.refresh_from_db()
        return job
    return transition(job.pk, JobStatus.CANCELLED, actor, "cancel")


def retry(name: str, actor: str) -> Job:
    """Resume a failed job from its slices' cursors, attempts reset."""
    job = latest_job(name)
    if job.status != JobStatus.FAILED:
        raise InvalidTransition(
            f"cannot retry {name} job #{job.pk}: it is {job.status}, not failed"
        )
    try:
        with transaction.atomic():
            Slice.objects.filter(job=job, status=SliceStatus.FAILED).update(
                status=SliceStatus.PENDING,
                attempts=0,
                lock_timeouts=0,
                lease_owner="",
                lease_expires_at=None,
            )
            job = transition(job.pk, JobStatus.RUNNING, actor, "retry")
    except IntegrityError:
        raise ActiveJobExists(already_active_message(name)) from None
    scheduler.fill_slots(job.pk)
    return job


def revert(name: str, actor: str, on_progress: Callable[[int, int], None] | None = None) -> int:
    """Undo the latest job's fill, in short transactions over its key range."""
    definition = get_definition(name)
    job = latest_job(name)
    if job.status not in FINISHED:
        raise InvalidTransition(
            f"cannot revert {name} job #{job.pk} while it is {job.status}; cancel it first"
        )
    if job.reverted_at is not None:
        raise InvalidTransition(
            f"{name} job #{job.pk} was already reverted at {job.reverted_at:%Y-%m-%d %H:%M:%S}"
        )
    reverted = 0
    if job.key_low is not None and job.key_high is not None:
        limits = BatchLimits.from_settings()
        for low, high in chunks(job.key_low, job.key_high, job.batch_size):
            reverted += revert_chunk(definition, job, low, high, limits)
            if on_progress:
                on_progress(high - job.key_low + 1, job.key_high - job.key_low + 1)
    job.reverted_at = timezone.now()
    job.save(update_fields=["reverted_at", "updated_at"])
    record(job, "revert", actor, f"{reverted} rows reverted")
    return reverted


def chunks(low: int, high: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(high, lo + size - 1)) for lo in range(low, high + 1, size)]


def revert_chunk(definition: Definition, job: Job, low: int, high: int, limits: BatchLimits) -> int:
    """One chunk, retried on lock timeouts like a batch."""
    for attempt in range(1, limits.max_attempts + 1):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                set_batch_limits(cursor, limits)
                return definition.revert(cursor, job.context, low, high)
        except Exception:
            if attempt == limits.max_attempts:
                raise
            time.sleep(limits.backoff_seconds * attempt)
    return 0


@dataclass(frozen=True)
class ReconcileReport:
    jobs: int
    dispatched: int


def reconcile() -> ReconcileReport:
    """The sweeper: re-dispatch slices whose lease expired, finish finished jobs."""
    jobs = list(
        Job.objects.filter(status__in=[JobStatus.RUNNING, JobStatus.CANCELLING]).values_list(
            "pk", flat=True
        )
    )
    dispatched = sum(len(scheduler.fill_slots(pk)) for pk in jobs)
    return ReconcileReport(jobs=len(jobs), dispatched=dispatched)


def progress(job: Job) -> Progress:
    return job_progress(job)


def run_sync(
    name: str,
    actor: str,
    options: JobOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    step_seconds: float = 1.0,
) -> Job:
    """Run a whole job in this process, without Celery or Redis."""
    options = options or JobOptions.build()
    options = JobOptions(options.batch_size, 1, options.pause_ms)
    queue = dispatch.LocalQueue()
    owner = f"sync-{os.getpid()}"
    with dispatch.using(queue):
        job = start(name, actor, options)
        while True:
            slice_id = queue.pop()
            if slice_id is None:
                scheduler.fill_slots(job.pk)
                slice_id = queue.pop()
            job.refresh_from_db()
            if on_progress:
                on_progress(job_progress(job))
            if slice_id is None or job.status != JobStatus.RUNNING:
                if job.status == JobStatus.RUNNING:
                    time.sleep(0.2)
                    continue
                return job
            work_slice(slice_id, owner, step_seconds)
