"""Faults during a running job: the job still ends succeeded and sound."""

import os
import random
import shutil
import subprocess
import threading
import time
from typing import Any

import psycopg
import pytest
from django.db import connection

from backfill.engine import dispatch, service
from backfill.engine.local import LocalQueue
from backfill.engine.options import JobOptions
from backfill.models import JobStatus, Slice
from organizations import naming
from tests.data import WORKER_ROWS, app_session, seed
from tests.invariants import assert_sound
from tests.jobs import finished, rows_done
from tests.processes import ROOT, Beat, PrivateRedis, wait_for

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.workers,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

SLOW: dict[str, Any] = {"batch_size": 200, "concurrency": 2, "pause_ms": 100}


def test_a_redis_restart_that_loses_every_message_is_recovered_by_the_sweeper(
    start_worker, output_dir
):
    redis = PrivateRedis(port=6391, log_path=output_dir / "redis.log")
    redis.start()
    env = {"TEST_REDIS_URL": redis.url}
    beat = Beat(log_path=output_dir / "beat.log", extra_env=env)
    try:
        seed(WORKER_ROWS, existing_groups=100)
        start_worker(extra_env=env)
        start_worker(extra_env=env)
        beat.start()
        # The first messages go nowhere: only the sweeper, through the private
        # Redis, can get the job going, and it must again after the restart.
        with dispatch.using(LocalQueue()):
            job = service.start("admin_groups", "test", JobOptions.build(**SLOW))
        wait_for(lambda: rows_done(job) > 2_000, 60)
        redis.stop()
        time.sleep(1)
        redis.start()
        before = rows_done(job)
        wait_for(lambda: rows_done(job) > before + 2_000, 90)
        wait_for(lambda: finished(job), 180)
    finally:
        beat.stop()
        redis.stop()
    assert job.status == JobStatus.SUCCEEDED
    assert assert_sound(job).rows_done == WORKER_ROWS


def terminate_other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_terminated_worker_connections_make_batches_retry_and_the_job_finish(start_worker, beat):
    seed(WORKER_ROWS, existing_groups=100)
    start_worker()
    start_worker()
    job = service.start("admin_groups", "test", JobOptions.build(**SLOW))
    terminated = 0
    for _ in range(3):
        wait_for(lambda: finished(job) or rows_done(job) > 0, 60)
        time.sleep(1)
        terminated += terminate_other_backends()
    assert terminated >= 2
    wait_for(lambda: finished(job), 180)
    assert job.status == JobStatus.SUCCEEDED
    assert assert_sound(job).rows_done == WORKER_ROWS
    assert sum(Slice.objects.filter(job=job).values_list("failed_batches", flat=True)) >= 1


def test_a_worker_stopped_gracefully_and_started_again_loses_nothing(start_worker, beat):
    seed(WORKER_ROWS, existing_groups=100)
    first = start_worker("graceful")
    start_worker("steady")
    job = service.start("admin_groups", "test", JobOptions.build(**SLOW))
    wait_for(lambda: rows_done(job) > 2_000, 60)
    first.stop()  # warm shutdown: the task in hand finishes its short budget
    assert first.process is not None
    assert first.process.returncode == 0
    start_worker("graceful-again")
    wait_for(lambda: finished(job), 180)
    assert job.status == JobStatus.SUCCEEDED
    assert assert_sound(job).rows_done == WORKER_ROWS


def test_app_transactions_holding_rows_wait_at_most_one_batch(start_worker, beat):
    seed(WORKER_ROWS, existing_groups=100)
    start_worker()
    start_worker()
    waits: list[float] = []
    stop = threading.Event()

    keys = organization_ids()

    def app() -> None:
        rng = random.Random(7)
        with connect() as conn:
            while not stop.is_set():
                ids = sorted(rng.sample(keys, 5))
                started = time.monotonic()
                with conn.transaction():
                    conn.execute(
                        "SELECT id FROM organizations_organization WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                        [ids],
                    )
                    waits.append(time.monotonic() - started)
                    conn.execute(
                        "UPDATE organizations_organization SET updated_at = now() WHERE id = ANY(%s)",
                        [ids],
                    )
                    time.sleep(0.3)  # a slow app transaction holding its rows

    thread = threading.Thread(target=app)
    thread.start()
    try:
        job = service.start("admin_groups", "test", JobOptions.build(**SLOW))
        wait_for(lambda: finished(job), 180)
    finally:
        stop.set()
        thread.join(30)
    assert job.status == JobStatus.SUCCEEDED
    assert_sound(job)
    assert len(waits) > 10, len(waits)
    print(f"app transactions {len(waits)}, longest wait for their rows {max(waits):.3f} s")
    # Batches aim at 0.05 s; an app transaction never queues behind more than one.
    assert max(waits) < 1.0, max(waits)


def organization_ids() -> range:
    """The seeded keys: sequences are not reset between tests, so they do not start at 1."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM organizations_organization")
        low, high = cursor.fetchone()
    return range(low, high + 1)


def connect() -> psycopg.Connection:
    return app_session(autocommit=True)


def restart_postgresql() -> None:
    """Stop the server (fast: every session is cut) and start it with the command CI uses."""
    version = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".")])
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version[-1], "main", "stop", "-m", "fast"],
        check=True,
    )
    time.sleep(2)  # batches fail while the server is down
    subprocess.run([str(ROOT / "scripts" / "ensure-services.sh")], check=True)


can_restart_postgresql = pytest.mark.skipif(
    shutil.which("pg_ctlcluster") is None or os.geteuid() != 0,
    reason="restarting the shared PostgreSQL needs pg_ctlcluster and root",
)


@can_restart_postgresql
def test_a_postgresql_restart_mid_job_is_retried_and_the_job_finishes(start_worker, beat):
    seed(WORKER_ROWS, existing_groups=100)
    start_worker()
    start_worker()
    job = service.start("admin_groups", "test", JobOptions.build(**SLOW))
    wait_for(lambda: rows_done(job) > 2_000, 60)
    connection.close()
    restart_postgresql()
    connection.close()  # this test's own session was cut too
    wait_for(lambda: finished(job), 180)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert assert_sound(job).rows_done == WORKER_ROWS


def test_deadlock_prone_app_transactions_never_fail_and_the_job_finishes(start_worker, beat):
    """App transactions lock rows and naming counters in the opposite order to batches.

    Each one updates two organizations from the highest id down, then creates
    organizations with common names in descending order, so its locks
    interleave with a batch's, which take rows in ascending key order. A batch gives up a lock wait
    after its lock timeout (100 ms), before PostgreSQL's deadlock check (1 s)
    would pick a victim, so the app side never sees an error.
    """
    seed(WORKER_ROWS, existing_groups=100)
    start_worker()
    start_worker()
    errors: list[str] = []
    waits: list[float] = []
    stop = threading.Event()

    keys = organization_ids()

    def app(seed_value: int) -> None:
        rng = random.Random(seed_value)
        with connect() as conn:
            while not stop.is_set():
                ids = sorted(rng.sample(keys, 2), reverse=True)
                # One order for every app transaction (they would deadlock with
                # each other otherwise), descending, unlike the batches.
                names = sorted({f"Shared Org {rng.randrange(10)}" for _ in range(2)}, reverse=True)
                started = time.monotonic()
                try:
                    with conn.transaction():
                        for pk in ids:
                            conn.execute(
                                "UPDATE organizations_organization SET updated_at = now() "
                                "WHERE id = %s",
                                [pk],
                            )
                        for name in names:
                            create_organization(conn, name)
                except psycopg.Error as error:
                    errors.append(f"{type(error).__name__}: {error}")
                waits.append(time.monotonic() - started)

    threads = [threading.Thread(target=app, args=(n,)) for n in range(3)]
    # The app starts after the job, so every group it makes is above the job's floor.
    job = service.start("admin_groups", "test", JobOptions.build(**SLOW))
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: finished(job), 180)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert job.status == JobStatus.SUCCEEDED, job.error
    report = assert_sound(job)
    assert report.rows_done == WORKER_ROWS
    assert errors == []
    assert len(waits) > 20, len(waits)
    assert max(waits) < 2.0, max(waits)
    failed = sum(Slice.objects.filter(job=job).values_list("failed_batches", flat=True))
    print(f"app transactions {len(waits)}, longest {max(waits):.3f} s, batches retried {failed}")


def create_organization(conn: psycopg.Connection, name: str) -> None:
    """What `Organization.objects.create()` sends, on this test's own connection."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            [naming.ADVISORY_LOCK_CLASS, naming.name_base(name)],
        )
        claimed = naming.claim_admin_groups(cursor, [0], [name])  # type: ignore[arg-type]
        cursor.execute(
            "INSERT INTO organizations_organization (name, search_name, created_at, "
            "updated_at, admin_id) VALUES (%s, lower(%s), now(), now(), %s)",
            [name, name, claimed[0]],
        )
