"""Revert is offered only where it can succeed, and a revert can be cancelled."""

import pytest
from django.core.management import call_command

from backfill.engine import local, service
from backfill.engine.lifecycle import Action, actions_for, refusal
from backfill.engine.options import JobOptions
from backfill.models import Job, JobStatus, Slice
from tests.data import seed
from tests.processes import manage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.usefixtures("back_to_expanded_state")
def test_revert_is_refused_in_one_line_once_the_column_is_not_null(local_queue, drain):
    seed(300)
    job = drain(service.start("admin_groups", "test", JobOptions.build(batch_size=100)))
    assert job.status == JobStatus.SUCCEEDED
    call_command("migrate", "organizations", "0006", verbosity=0)  # the contract
    assert Action.REVERT not in actions_for(job)
    assert "NOT NULL" in (refusal(job, Action.REVERT) or "")
    result = manage("backfill", "revert", "admin_groups", "--yes", "--sync")
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "NOT NULL" in result.stderr
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED  # untouched: still a success, nothing failed


def test_a_revert_can_be_cancelled_and_asked_again_carries_on(local_queue, drain):
    seed(2_000)
    job = drain(service.start("admin_groups", "test", JobOptions.build(batch_size=100)))
    assert job.status == JobStatus.SUCCEEDED
    job = service.revert("admin_groups", "test")
    assert Action.CANCEL in actions_for(job)
    local.step(local_queue.pop() or 0, "test-owner", 0.2)  # part of the revert done
    job = service.cancel("admin_groups", "test")
    job = drain(job)
    assert job.status == JobStatus.CANCELLED
    undone = sum(Slice.objects.filter(job=job).values_list("rows_reverted", flat=True))
    assert 0 < undone < 2_000
    assert Action.REVERT in actions_for(job)
    job = drain(service.revert("admin_groups", "test"))
    assert job.status == JobStatus.REVERTED
    assert sum(Slice.objects.filter(job=job).values_list("rows_reverted", flat=True)) == 2_000
    assert Job.objects.filter(pk=job.pk, reverted_at__isnull=False).exists()
