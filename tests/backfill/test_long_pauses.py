"""A pause of a second or more is waited holding nothing, and every pause is followed by a batch;
a job waiting for its pace keeps its slices whole and counts the wall time it waited once."""

import time

import pytest

from backfill.engine import local, service
from backfill.engine.options import JobOptions
from backfill.models import Job, JobStatus, Slice
from organizations.models import Organization
from tests.data import app_session, seed

pytestmark = pytest.mark.django_db(transaction=True)


class Deadline(Exception):
    pass


def drive_for(job: Job, queue: local.LocalQueue, seconds: float) -> Job:
    """Work the job here until it stops working, or for `seconds` at most."""
    ends = time.monotonic() + seconds

    def watch(_: Job) -> None:
        if time.monotonic() > ends:
            raise Deadline

    try:
        return local.drive(job.pk, queue, owner="test-owner", step_seconds=5, on_progress=watch)
    except Deadline:
        job.refresh_from_db()
        return job


@pytest.mark.parametrize("pace", [False, True], ids=["pace-off", "pace-auto"])
def test_a_pause_of_a_second_still_fills_a_batch_after_every_pause(local_queue, pace):
    seed(300)
    options = JobOptions.build(batch_size=100, concurrency=1, pause_ms=1000, pace=pace)
    job = service.start("admin_groups", "test", options)
    slices = Slice.objects.filter(job=job).count()
    job = drive_for(job, local_queue, 60)
    assert job.status == JobStatus.SUCCEEDED
    assert Slice.objects.filter(job=job).rows_done() == 300
    assert Slice.objects.filter(job=job).count() == slices  # a wait is no reason to split


def test_a_job_stopped_by_a_signal_splits_no_slice_and_counts_its_wait_once(settings, local_queue):
    settings.BACKFILL_PACE_INTERVAL_SECONDS = 0
    settings.BACKFILL_MAX_PACE_PAUSE_MS = 1000
    seed(5000)
    with app_session() as app:
        app.execute("SELECT txid_current(), pg_sleep(2.2)")  # a transaction 2 s old, open
        options = JobOptions.build(
            batch_size=100, concurrency=2, pace=True, budgets={"transaction_age_seconds": 1}
        )
        job = service.start("admin_groups", "test", options)
        slices = Slice.objects.filter(job=job).count()
        started = time.monotonic()
        job = drive_for(job, local_queue, 6)
        elapsed = time.monotonic() - started
    assert (job.status, job.pace_limit) == (JobStatus.RUNNING, "transaction_age")
    assert Slice.objects.filter(job=job).rows_done() == 0
    assert Slice.objects.filter(job=job).count() == slices
    # Two slices waited side by side: the job was held back for the wall time, once.
    assert 3 < job.throttled_seconds <= elapsed + 1.5


def test_a_long_pause_is_the_workers_not_each_slices(local_queue):
    """One worker, four slices, a pause of a second: about one batch a second, not
    one batch per slice a second (a slice waiting out its pause keeps its slot)."""
    seed(2_000)
    Organization.objects.update(search_name=None)
    options = JobOptions.build(batch_size=100, concurrency=1, pause_ms=1000, pace=False)
    job = service.start("search_names", "test", options)
    assert Slice.objects.filter(job=job).count() > 1
    started = time.monotonic()
    job = drive_for(job, local_queue, 4)
    elapsed = time.monotonic() - started
    batches = sum(Slice.objects.filter(job=job).values_list("batches", flat=True))
    assert 2 <= batches <= elapsed + 1.5
