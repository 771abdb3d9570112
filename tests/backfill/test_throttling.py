"""Batch size after a statement or lock timeout, and the bound on stored samples."""

from collections.abc import Sequence

import pytest
from django.db.backends.utils import CursorWrapper

from backfill.models import JobStatus, Sample, Slice, SliceStatus
from backfill.registry import Row
from organizations.backfills import AdminGroups
from organizations.models import Organization
from tests.data import app_session, seed

pytestmark = pytest.mark.django_db(transaction=True)


class SlowOnBigBatches(AdminGroups):
    """admin_groups, except that a batch of more than 100 rows takes 0.3 s."""

    name = "test_slow_on_big_batches"

    def fill(self, cursor: CursorWrapper, rows: Sequence[Row]) -> int:
        if len(rows) > 100:
            cursor.execute("SELECT pg_sleep(0.3)")
        return super().fill(cursor, rows)


def test_a_batch_cut_off_by_the_statement_timeout_is_retried_smaller(register, run_sync, settings):
    register(SlowOnBigBatches)
    settings.BACKFILL_STATEMENT_TIMEOUT_MS = 150
    settings.BACKFILL_MAX_ATTEMPTS = 6
    seed(1_000, share=0, existing_groups=20)
    job = run_sync("test_slow_on_big_batches", batch_size=800, concurrency=1)
    assert job.status == JobStatus.SUCCEEDED
    first = Slice.objects.filter(job=job).order_by("number").first()
    assert first.failed_batches >= 3  # 800 -> 400 -> 200 -> 100
    assert "statement timeout" in first.last_error
    samples = Sample.objects.filter(job=job)
    assert max(samples.values_list("rows", flat=True)) <= 100  # only small batches commit
    assert samples.filter(slice_number=first.number).order_by("id").first().batch_size == 100
    assert not Organization.objects.filter(admin__isnull=True).exists()


APP_LOCK = 4242


class WaitsOnTheApp(AdminGroups):
    """admin_groups, except that a batch of more than `waits_above` rows needs the app's lock."""

    waits_above = 0

    def fill(self, cursor: CursorWrapper, rows: Sequence[Row]) -> int:
        if len(rows) > self.waits_above:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APP_LOCK])
        return super().fill(cursor, rows)


class BigBatchesWaitOnTheApp(WaitsOnTheApp):
    name = "test_big_batches_wait_on_the_app"
    waits_above = 100


class AlwaysWaitsOnTheApp(WaitsOnTheApp):
    name = "test_always_waits_on_the_app"


@pytest.fixture
def app_holds_the_lock():
    """Another session holds APP_LOCK for the whole test, as an idle app transaction would."""
    with app_session(autocommit=True) as app:
        app.execute("SELECT pg_advisory_lock(%s)", [APP_LOCK])
        yield


def test_lock_timeouts_shrink_the_batch_without_spending_attempts(
    register, run_sync, settings, app_holds_the_lock
):
    register(BigBatchesWaitOnTheApp)
    settings.BACKFILL_LOCK_TIMEOUT_MS = 50
    settings.BACKFILL_MAX_ATTEMPTS = 2
    settings.BACKFILL_BACKOFF_SECONDS = 0.01
    seed(1_000, share=0, existing_groups=20)
    job = run_sync("test_big_batches_wait_on_the_app", batch_size=800, concurrency=1)
    assert job.status == JobStatus.SUCCEEDED, job.error
    first = Slice.objects.filter(job=job).order_by("number").first()
    # 800 -> 400 -> 200 -> 100: more failures than attempts allowed, none counted.
    assert first.failed_batches >= 3 > settings.BACKFILL_MAX_ATTEMPTS - 1
    assert "lock timeout" in first.last_error
    # The run of timeouts ended with a success; the job's count of them stays.
    assert first.lock_timeouts == 0
    assert first.lock_timeouts_total == first.failed_batches
    assert max(Sample.objects.filter(job=job).values_list("rows", flat=True)) <= 100
    assert not Organization.objects.filter(admin__isnull=True).exists()


def test_a_lock_held_for_ever_fails_the_job_after_the_lock_timeout_budget(
    register, run_sync, settings, app_holds_the_lock
):
    register(AlwaysWaitsOnTheApp)
    settings.BACKFILL_LOCK_TIMEOUT_MS = 20
    settings.BACKFILL_MAX_ATTEMPTS = 2
    settings.BACKFILL_MAX_LOCK_TIMEOUTS = 8
    settings.BACKFILL_BACKOFF_SECONDS = 0.001
    settings.BACKFILL_MAX_BACKOFF_SECONDS = 0.01
    seed(200, share=0, existing_groups=20)
    job = run_sync("test_always_waits_on_the_app", batch_size=100, concurrency=1)
    assert job.status == JobStatus.FAILED
    assert "8 lock timeouts in a row" in job.error, job.error
    failed = Slice.objects.get(job=job, status=SliceStatus.FAILED)
    # Contention spent none of the attempts, which are for faults.
    assert (failed.lock_timeouts, failed.attempts) == (8, 0)
    assert failed.failed_batches == 8
    assert not Organization.objects.filter(admin__isnull=False).exists()


def test_samples_are_pruned_to_the_configured_number(run_sync, settings):
    settings.BACKFILL_SAMPLES_PER_JOB = 30
    settings.BACKFILL_MIN_BATCH_SIZE = 50
    settings.BACKFILL_MAX_BATCH_SIZE = 50
    seed(10_000, share=0, existing_groups=20)
    job = run_sync(batch_size=50, concurrency=1)
    batches = sum(Slice.objects.filter(job=job).values_list("batches", flat=True))
    assert batches >= 200
    assert Sample.objects.filter(job=job).count() <= 30 + 20
