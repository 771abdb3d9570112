"""Races between people and the engine: starts, pauses and cancels at any moment."""

import pytest
from django.contrib.auth.models import Group

from backfill.engine import local, scheduler, service
from backfill.engine.options import JobOptions
from backfill.models import Job, JobStatus
from organizations.models import Organization
from tests.data import seed
from tests.processes import manage_at_once

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_starts_at_once_make_one_job_and_one_clear_refusal():
    seed(500, share=0.2, existing_groups=20)
    runs = manage_at_once("backfill", "start", "admin_groups")
    results = sorted((run.returncode, run.stderr) for run in runs)
    assert [code for code, _ in results] == [0, 2]
    assert "already has an active job" in results[1][1]
    assert Job.objects.count() == 1


def test_revert_of_a_cancelled_job_removes_only_what_it_made(local_queue, drain):
    seed(3_000, share=0.3, existing_groups=50)
    before = set(Group.objects.values_list("pk", flat=True))
    job = service.start("admin_groups", "test", JobOptions.build(batch_size=200, concurrency=1))
    first = local_queue.pop()
    local.step(first, "test-owner", 0.001)  # one batch of the only slice
    service.cancel("admin_groups", "test")
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    filled = Organization.objects.filter(admin__isnull=False).count()
    assert 0 < filled < 3_000
    assert drain(service.revert("admin_groups", "test")).status == JobStatus.REVERTED
    assert set(Group.objects.values_list("pk", flat=True)) == before
    assert not Organization.objects.filter(admin__isnull=False).exists()


def test_pauses_and_resumes_between_batches_never_lose_count(local_queue):
    seed(4_000, share=0.2, existing_groups=20)
    job = service.start("admin_groups", "test", JobOptions.build(batch_size=100, concurrency=2))
    for round_number in range(200):
        slice_id = local_queue.pop()
        if slice_id is None:
            scheduler.advance(job.pk)
            slice_id = local_queue.pop()
        job.refresh_from_db()
        if job.status == JobStatus.SUCCEEDED:
            break
        if slice_id is not None:
            local.step(slice_id, f"owner-{round_number}", 0.05)
        job.refresh_from_db()
        if round_number % 3 == 0 and job.status == JobStatus.RUNNING:
            service.pause("admin_groups", "test")
            service.resume("admin_groups", "test")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    done = sum(job.slices.values_list("rows_done", flat=True))
    assert done == Organization.objects.filter(admin__isnull=False).count() == 4_000
