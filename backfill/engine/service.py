"""The actions on backfills: one entry point each, shared by every interface.

The CLI, the dashboard, the JSON API and the contract migration call these
functions and never change jobs or slices themselves. People's actions address
the latest job of a definition; whether they are allowed is the lifecycle
table's answer (`lifecycle.py`), never decided here.
"""

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction

from backfill.engine import dispatch, display, local, prune, scheduler, slicing
from backfill.engine import revert as reverting
from backfill.engine.checker import estimate_pending
from backfill.engine.guards import already_active_message
from backfill.engine.lifecycle import Action, refused, transition
from backfill.engine.options import JobOptions
from backfill.errors import ActiveJobExists, NoJob
from backfill.models import Job, JobStatus
from backfill.pacing import health
from backfill.registry import Definition, get_definition
from backfill.statuses import WORKING_STATUSES

logger = logging.getLogger(__name__)

__all__ = ["JobOptions"]


def key_range(definition: Definition) -> tuple[str | None, str | None]:
    """The table's lowest and highest keys, by the key index, for any key type."""
    keys = definition.model._default_manager.order_by("pk").values_list("pk", flat=True)
    return slicing.as_key(keys.first()), slicing.as_key(keys.last())


def start(name: str, actor: str, options: JobOptions | None = None) -> Job:
    """Create a job over the whole table and dispatch its first slices."""
    definition = get_definition(name)
    definition.refuse_unsupported_key()
    options = options or JobOptions.build()
    dispatch.ready()  # fail before creating anything if nothing can run it
    error = refused(Job(definition=name, status=JobStatus.PENDING), Action.START)
    if error is not None:
        raise error
    baseline = latency_baseline() if options.pace else None
    try:
        with transaction.atomic():
            job = create_job(definition, actor, options, baseline)
    except IntegrityError:
        # Another start won the race between the question above and the insert.
        raise ActiveJobExists(already_active_message(Job(definition=name))) from None
    scheduler.advance(job.pk)
    job.refresh_from_db()
    return job


def create_job(
    definition: Definition, actor: str, options: JobOptions, baseline_ms: float | None = None
) -> Job:
    low, high = key_range(definition)
    total = estimate_pending(definition)
    with connection.cursor() as cursor:
        context = definition.prepare(cursor)
    job = Job.objects.create(
        definition=definition.name,
        batch_size=options.batch_size,
        concurrency=options.concurrency,
        pause_ms=options.pause_ms,
        pace=options.pace,
        max_latency_ratio=options.budgets.latency_ratio,
        max_replica_lag_seconds=options.budgets.replica_lag_seconds,
        max_transaction_age_seconds=options.budgets.transaction_age_seconds,
        max_wal_mb_per_second=options.budgets.wal_mb_per_second,
        latency_baseline_ms=baseline_ms,
        key_low=low,
        key_high=high,
        rows_total=total.rows,
        rows_total_is_estimate=total.is_estimate,
        context=context,
        created_by=actor,
    )
    if high is not None:
        counted = slicing.add_slices(job, definition, None, high, total)
        if slicing.sample_percent(total) is None:
            job.rows_total, job.rows_total_is_estimate = counted, False
            job.save(update_fields=["rows_total", "rows_total_is_estimate"])
    detail = f"batch size {display.count(options.batch_size)}, concurrency {options.concurrency}"
    return transition(job, Action.START, actor, detail)


def latest_job(name: str) -> Job:
    get_definition(name)
    job = Job.objects.latest_for(name)
    if job is None:
        raise NoJob(
            f"backfill {name!r} has never run; start it with `manage.py backfill start {name}`"
        )
    return job


def pause(name: str, actor: str, job: Job | None = None) -> Job:
    return transition(job or latest_job(name), Action.PAUSE, actor)


def resume(name: str, actor: str, job: Job | None = None) -> Job:
    dispatch.ready()
    paused = job or latest_job(name)
    # The job is paused: what the app alone gets now.
    baseline = latency_baseline() if paused.pace else None
    job = transition(paused, Action.RESUME, actor, latency_baseline_ms=baseline)
    scheduler.advance(job.pk)
    return job


def latency_baseline() -> float:
    """The commit latency pacing compares against, taken while this job writes nothing."""
    return health.baseline_ms()


def cancel(name: str, actor: str, job: Job | None = None) -> Job:
    job = transition(job or latest_job(name), Action.CANCEL, actor)
    scheduler.advance(job.pk)
    job.refresh_from_db()
    return job


def retry(name: str, actor: str, job: Job | None = None) -> Job:
    """Resume a failed job from its slices' cursors, budgets reset."""
    dispatch.ready()
    failed = job or latest_job(name)
    baseline = latency_baseline() if failed.pace else None
    job = transition(failed, Action.RETRY, actor, latency_baseline_ms=baseline)
    scheduler.advance(job.pk)
    return job


def revert(name: str, actor: str, job: Job | None = None) -> Job:
    """Ask the workers to undo the latest job's fill; returns at once."""
    dispatch.ready()
    job = reverting.begin(job or latest_job(name), actor)
    scheduler.advance(job.pk)
    return job


# The people's actions by name: on the job given (the dashboard's, checked
# under its row lock to be the latest), or else on the latest job.
ACTIONS: dict[Action, Callable[[str, str, Job | None], Job]] = {
    Action.PAUSE: pause,
    Action.RESUME: resume,
    Action.CANCEL: cancel,
    Action.RETRY: retry,
    Action.REVERT: revert,
}


def prune_logs(name: str | None, actor: str) -> list[prune.Pruned]:
    """Drop now the write logs of jobs (of `name`, or all) that can no longer be reverted."""
    if name is not None:
        get_definition(name)  # an unknown name is refused, not silently nothing
    return prune.prune(name, actor)


@dataclass(frozen=True)
class ReconcileReport:
    jobs: int
    dispatched: int
    pruned: int = 0  # write logs dropped: their jobs can no longer be reverted


def reconcile() -> ReconcileReport:
    """The sweeper: re-dispatch slices whose lease expired, end finished jobs, drop
    the write logs of jobs that can no longer be reverted (a contract applied since)."""
    working = [*WORKING_STATUSES, JobStatus.CANCELLING]
    jobs = list(Job.objects.filter(status__in=working).values_list("pk", flat=True))
    dispatched = sum(len(scheduler.advance(pk)) for pk in jobs)
    pruned = prune.prune()
    return ReconcileReport(jobs=len(jobs), dispatched=dispatched, pruned=len(pruned))


def run_sync(
    name: str,
    actor: str,
    options: JobOptions | None = None,
    on_progress: Callable[[Job], None] | None = None,
    step_seconds: float = 1.0,
) -> Job:
    """Run a whole job in this process, without Celery or Redis."""
    options = options or JobOptions.build()
    queue = local.LocalQueue()
    with dispatch.using(queue):
        job = start(name, actor, dataclasses.replace(options, concurrency=1))
        return local.drive(job.pk, queue, step_seconds=step_seconds, on_progress=on_progress)


def revert_sync(name: str, actor: str, on_progress: Callable[[Job], None] | None = None) -> Job:
    """Undo the latest job's fill in this process, without Celery or Redis."""
    queue = local.LocalQueue()
    with dispatch.using(queue):
        job = revert(name, actor)
        return local.drive(job.pk, queue, on_progress=on_progress)
