"""A job as a test watches it while other processes work it: every read goes to the database."""

from backfill.models import Job, Slice
from backfill.statuses import FINISHED_STATUSES


def status_of(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def rows_done(job: Job) -> int:
    return Slice.objects.filter(job=job).rows_done()


def finished(job: Job) -> bool:
    return status_of(job) in FINISHED_STATUSES
