"""The allowed job transitions, and the only code that changes a job's status.

The CLI, the dashboard and the workers all go through `transition`, which
locks the job row, checks the move against one table and records an event,
so a pause racing a batch commit or two clicks at once resolve cleanly.
"""

from django.db import transaction
from django.utils import timezone

from backfill.errors import InvalidTransition
from backfill.models import Event, Job, JobStatus

S = JobStatus

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED, S.FAILED, S.SUCCEEDED}),
    S.RUNNING: frozenset({S.PAUSED, S.CANCELLING, S.FAILED, S.SUCCEEDED}),
    S.PAUSED: frozenset({S.RUNNING, S.CANCELLED}),
    S.CANCELLING: frozenset({S.CANCELLED}),
    S.FAILED: frozenset({S.RUNNING, S.CANCELLED}),
    S.CANCELLED: frozenset(),
    S.SUCCEEDED: frozenset(),
}

FINISHED = frozenset({S.CANCELLED, S.FAILED, S.SUCCEEDED})


def can_move(current: str, target: str) -> bool:
    return JobStatus(target) in ALLOWED[JobStatus(current)]


def transition(job_id: int, target: JobStatus, actor: str, action: str, detail: str = "") -> Job:
    """Move the job to `target` or raise InvalidTransition; record who did it."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if not can_move(job.status, target):
            raise InvalidTransition(
                f"cannot {action} {job.definition} job #{job.pk}: it is {job.status}"
            )
        previous = job.status
        job.status = target
        now = timezone.now()
        if target == S.RUNNING and job.started_at is None:
            job.started_at = now
        if target in FINISHED:
            job.finished_at = now
        elif previous in FINISHED:
            job.finished_at = None
        if target == S.FAILED:
            job.error = detail
        elif target == S.RUNNING:
            job.error = ""
        job.save(update_fields=["status", "started_at", "finished_at", "error", "updated_at"])
        record(job, action, actor, detail, from_status=previous, to_status=target)
        return job


def record(
    job: Job, action: str, actor: str, detail: str = "", from_status: str = "", to_status: str = ""
) -> Event:
    return Event.objects.create(
        job=job,
        action=action,
        actor=actor,
        detail=detail,
        from_status=from_status,
        to_status=to_status,
    )
