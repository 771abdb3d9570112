import pytest
from django.core.management import call_command

from backfill import dispatch, scheduler, service
from backfill.models import Job, JobStatus
from backfill.runner import work_slice


@pytest.fixture
def seed():
    def seed(count: int, share: float = 0.2, existing_groups: int = 20) -> None:
        call_command(
            "seed_organizations",
            "--count",
            str(count),
            "--duplicate-share",
            str(share),
            "--existing-groups",
            str(existing_groups),
            verbosity=0,
        )

    return seed


@pytest.fixture
def run_sync():
    def run(name: str = "admin_groups", **options: int) -> Job:
        return service.run_sync(name, "test", service.JobOptions.build(**options), step_seconds=0.5)

    return run


@pytest.fixture
def local_queue():
    """Jobs started in a test dispatch to memory; the test works the slices."""
    with dispatch.using(dispatch.LocalQueue()) as queue:
        yield queue


@pytest.fixture
def drain(local_queue):
    """Work every slice dispatched to the local queue until the job stops running."""

    def drain(job: Job) -> Job:
        while True:
            slice_id = local_queue.pop()
            if slice_id is None:
                scheduler.fill_slots(job.pk)
                slice_id = local_queue.pop()
            job.refresh_from_db()
            if slice_id is None and job.status != JobStatus.RUNNING:
                return job
            if slice_id is not None:
                work_slice(slice_id, "test-owner", 5)

    return drain
