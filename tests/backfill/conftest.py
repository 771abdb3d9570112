import pytest

from backfill import dispatch, local, service
from backfill.local import LocalQueue
from backfill.models import Job
from backfill.options import JobOptions
from tests import data


@pytest.fixture
def seed():
    def seed(count: int, share: float = 0.2, existing_groups: int = 20) -> None:
        data.seed(count, share, existing_groups)

    return seed


@pytest.fixture
def run_sync():
    def run(name: str = "admin_groups", **options: int) -> Job:
        return service.run_sync(name, "test", JobOptions.build(**options), step_seconds=0.5)

    return run


@pytest.fixture
def local_queue():
    """Jobs started in a test dispatch to memory; the test works the slices."""
    with dispatch.using(LocalQueue()) as queue:
        yield queue


@pytest.fixture
def drain(local_queue):
    """Work every slice dispatched to the local queue until the job stops working."""

    def drain(job: Job) -> Job:
        return local.drive(job.pk, local_queue, owner="test-owner", step_seconds=5)

    return drain
