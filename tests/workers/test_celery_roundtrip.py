import pytest

from workers.tasks import ping

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_runs_a_task_and_returns_its_result(start_worker):
    start_worker()
    result = ping.delay("hello from the test")
    assert result.get(timeout=30) == "hello from the test"
