"""Fixtures that start real processes against the real PostgreSQL and Redis."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from tests.processes import Beat, Worker, purge_broker


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database as it is between expand and contract, where the backfill runs.

    Migrations run to the end first (so the contract migration is exercised),
    then the contract is reversed: legacy rows without admin can exist again.
    """
    with django_db_blocker.unblock():
        call_command("migrate", "organizations", "0004", verbosity=0)
    yield
    with django_db_blocker.unblock():
        end_other_sessions()


def end_other_sessions() -> None:
    """Cut sessions other tests' processes and threads left on the test database.

    A worker still exiting, or an app thread's connection, would otherwise make
    dropping the database fail ("being accessed by other users") and leave it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder under test-output/ for logs and screenshots of this test."""
    path = Path("test-output") / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def start_worker(output_dir: Path) -> Iterator[Callable[..., Worker]]:
    """Start real Celery workers; every one is stopped when the test ends."""
    purge_broker()
    started: list[Worker] = []

    def start(
        name: str | None = None,
        extra_args: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Worker:
        name = name or f"w{len(started) + 1}"
        worker = Worker(
            name=name,
            log_path=output_dir / f"{name}.log",
            extra_args=extra_args or [],
            extra_env=extra_env or {},
        )
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.stop()
    purge_broker()


@pytest.fixture
def beat(output_dir: Path) -> Iterator[Beat]:
    """The real beat process, so the sweeper recovers what the test breaks."""
    process = Beat(log_path=output_dir / "beat.log")
    process.start()
    yield process
    process.stop()
