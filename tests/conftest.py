"""Fixtures that start real processes against the real PostgreSQL and Redis."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from backfill import registry
from backfill.engine import dispatch, local, service
from backfill.engine.local import LocalQueue
from backfill.engine.options import JobOptions
from backfill.models import Job
from backfill.registry import Definition
from tests.processes import Beat, Worker, purge_broker


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database as it is between expand and contract, where the backfill runs.

    Migrations run to the end first (so the contract migrations are exercised),
    then the contracts are reversed: legacy rows without admin (or, in the
    partitioned example table, without unit) can exist again.
    """
    with django_db_blocker.unblock():
        to_expanded_state()
        call_command("migrate", "examples", "0002", verbosity=0)
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
    """A folder under test-output/ (or TEST_OUTPUT, when two runs share the checkout)
    for logs and screenshots of this test."""
    path = Path(os.environ.get("TEST_OUTPUT", "test-output")) / request.node.name
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


@pytest.fixture
def back_to_expanded_state() -> Iterator[None]:
    """Migrate back to between expand and contract after a test that contracts or
    expands: the state every other test starts from (see `django_db_setup`)."""
    yield
    to_expanded_state()


def to_expanded_state() -> None:
    """Between expand and contract: the contract (0006) reversed, the naming
    tables and triggers (0007, 0008, which need only 0004) in place, also after a
    test that went back below them."""
    call_command("migrate", "organizations", "0005", verbosity=0)
    call_command("migrate", "organizations", "0008", verbosity=0)


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch) -> Callable[[type[Definition]], type[Definition]]:
    """`backfill.register` for this test alone: its stand-in definitions go into a copy
    of the registry that is dropped when it ends, so no other test lists or runs them."""
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    return registry.register


@pytest.fixture
def run_sync():
    def run(name: str = "admin_groups", **options: Any) -> Job:
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
