"""A job that pacing keeps stopped hands its slices back for as long as it takes, failing none."""

import pytest

from backfill.engine import service
from backfill.engine.options import JobOptions
from backfill.engine.runner import Outcome, SliceWork
from backfill.models import JobStatus, Slice, SliceStatus
from tests.data import app_session, seed

pytestmark = pytest.mark.django_db(transaction=True)


def test_deliveries_handed_back_by_pacing_spend_no_attempts(settings, local_queue):
    settings.BACKFILL_MAX_ATTEMPTS = 2
    settings.BACKFILL_PACE_INTERVAL_SECONDS = 0
    seed(500)
    with app_session() as app:
        app.execute("SELECT txid_current(), pg_sleep(2.2)")  # a transaction 2 s old, open
        job = service.start(
            "admin_groups",
            "test",
            JobOptions.build(concurrency=1, pace=True, budgets={"transaction_age_seconds": 1}),
        )
        slc = Slice.objects.filter(job=job).order_by("number").first()
        assert slc is not None
        for delivery in range(6):  # three times the attempts that fail a slice
            Slice.objects.filter(pk=slc.pk).update(retry_at=None)
            owner = f"worker-{delivery}"
            run = SliceWork(slc.pk, owner, budget_seconds=5).run()
            assert (run.outcome, run.retry_in) == (Outcome.PACED, 5.0)
            Slice.objects.release(slc.pk, owner, run.retry_in)
        slc.refresh_from_db()
        job.refresh_from_db()
        assert slc.status != SliceStatus.FAILED
        assert slc.attempts == 0
        assert (job.status, job.pace_limit) == (JobStatus.RUNNING, "transaction_age")
        # Six waits of 5 s promised within a second of each other: 5 s of wall time, once.
        assert 5.0 <= job.throttled_seconds < 6.5
