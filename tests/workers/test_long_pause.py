"""A pause of a second or more, with a real worker: each pause is followed by a batch,
so the job fills every row at the pace asked for instead of handing back for ever."""

import pytest

from backfill.engine import service
from backfill.engine.options import JobOptions
from backfill.models import JobStatus
from organizations.models import Organization
from tests.data import seed
from tests.invariants import assert_sound
from tests.jobs import finished, status_of
from tests.processes import wait_for

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

BATCHES = 4
BATCH_SIZE = 50


def test_a_pause_of_a_second_fills_every_row_with_a_real_worker(start_worker):
    seed(BATCHES * BATCH_SIZE)
    start_worker()
    options = JobOptions.build(batch_size=BATCH_SIZE, concurrency=1, pause_ms=1000, pace=False)
    job = service.start("admin_groups", "test", options)
    wait_for(lambda: finished(job), 90)
    assert status_of(job) == JobStatus.SUCCEEDED
    assert not Organization.objects.filter(admin__isnull=True).exists()
    assert_sound(job)
