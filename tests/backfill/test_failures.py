"""A batch that always fails fails its slice and job after the set attempts; retry resumes."""

from collections.abc import Sequence

import pytest
from django.db.backends.utils import CursorWrapper

from backfill.engine import service
from backfill.models import JobStatus, Slice, SliceStatus
from backfill.registry import Row
from organizations.backfills import AdminGroups
from organizations.models import Organization
from tests.data import seed

pytestmark = pytest.mark.django_db(transaction=True)

POISON = {"key": -1}


class PoisonedAdminGroups(AdminGroups):
    """admin_groups, except that any batch holding the poisoned key fails."""

    name = "test_poisoned_admin_groups"

    def fill(self, cursor: CursorWrapper, rows: Sequence[Row]) -> int:
        if any(row[0] == POISON["key"] for row in rows):
            cursor.execute("SELECT 1 / 0")
        return super().fill(cursor, rows)


def test_a_poison_batch_fails_the_job_with_its_error_then_retry_finishes(
    register, run_sync, drain, settings
):
    register(PoisonedAdminGroups)
    settings.BACKFILL_MAX_ATTEMPTS = 3
    seed(1_000, share=0.2, existing_groups=20)
    POISON["key"] = Organization.objects.order_by("pk").values_list("pk", flat=True)[600]
    job = run_sync("test_poisoned_admin_groups", batch_size=100)

    assert job.status == JobStatus.FAILED
    assert "division by zero" in job.error
    failed = Slice.objects.get(job=job, status=SliceStatus.FAILED)
    assert failed.failed_batches == 3
    done = sum(Slice.objects.filter(job=job).values_list("rows_done", flat=True))
    assert done == Organization.objects.filter(admin__isnull=False).count()
    assert done < 1_000

    POISON["key"] = -1
    cursor_before = failed.cursor
    retried = service.retry("test_poisoned_admin_groups", "test")
    assert retried.status == JobStatus.RUNNING
    assert Slice.objects.get(pk=failed.pk).cursor == cursor_before  # resumes, not restarts
    job = drain(retried)
    assert job.status == JobStatus.SUCCEEDED
    assert not Organization.objects.filter(admin__isnull=True).exists()
    assert sum(Slice.objects.filter(job=job).values_list("rows_done", flat=True)) == 1_000
