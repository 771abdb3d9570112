"""Celery tasks. Thin by design: the work itself lives in the backfill engine."""

import logging
from typing import Any

from celery import Task, shared_task

from backfill.engine import runner, scheduler, service

logger = logging.getLogger(__name__)


@shared_task(name="workers.tasks.ping")
def ping(payload: str = "pong") -> str:
    """Round trip through broker, worker and result backend, for health checks."""
    return payload


@shared_task(
    bind=True,
    name="workers.tasks.run_slice",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def run_slice(self: Task[Any, Any], slice_id: int) -> str:
    """Work one slice (filling or reverting) for a bounded time, then hand it over.

    The lease in the database, not the message, says who works a slice, so a
    duplicate or late delivery simply finds the slice taken and returns.
    """
    owner = str(self.request.id or f"local-{slice_id}")
    run = runner.work_slice(slice_id, owner)
    if run.owns_lease and run.job_id is not None:
        scheduler.hand_over(slice_id, owner, run.job_id, run.retry_in)
    logger.info("job %s slice %s: %s", run.job_id, slice_id, run.outcome)
    return run.outcome.value


@shared_task(name="workers.tasks.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    """Periodic: re-dispatch slices whose lease expired, end finished jobs."""
    report = service.reconcile()
    return {"jobs": report.jobs, "dispatched": report.dispatched}
