"""Faults during a running job: the job still ends succeeded and sound."""

import random
import threading
import time

import psycopg
import pytest
from django.db import connection

from backfill import dispatch, service
from backfill.models import JobStatus, Slice
from tests.e2e.test_workers import ROWS, finished, rows_done, seed, wait_for
from tests.invariants import assert_sound
from tests.processes import Beat, PrivateRedis

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.workers,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

SLOW = {"batch_size": 200, "concurrency": 2, "pause_ms": 100}


def test_a_redis_restart_that_loses_every_message_is_recovered_by_the_sweeper(
    start_worker, output_dir
):
    redis = PrivateRedis(port=6391, log_path=output_dir / "redis.log")
    redis.start()
    env = {"TEST_REDIS_URL": redis.url}
    beat = Beat(log_path=output_dir / "beat.log", extra_env=env)
    try:
        seed()
        start_worker(extra_env=env)
        start_worker(extra_env=env)
        beat.start()
        # The first messages go nowhere: only the sweeper, through the private
        # Redis, can get the job going, and it must again after the restart.
        with dispatch.using(dispatch.LocalQueue()):
            job = service.start("admin_groups", "test", service.JobOptions.build(**SLOW))
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
    assert assert_sound(job).rows_done == ROWS


def terminate_other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_terminated_worker_connections_make_batches_retry_and_the_job_finish(start_worker, beat):
    seed()
    start_worker()
    start_worker()
    job = service.start("admin_groups", "test", service.JobOptions.build(**SLOW))
    terminated = 0
    for _ in range(3):
        wait_for(lambda: finished(job) or rows_done(job) > 0, 60)
        time.sleep(1)
        terminated += terminate_other_backends()
    assert terminated >= 2
    wait_for(lambda: finished(job), 180)
    assert job.status == JobStatus.SUCCEEDED
    assert assert_sound(job).rows_done == ROWS
    assert sum(Slice.objects.filter(job=job).values_list("failed_batches", flat=True)) >= 1


def test_a_worker_stopped_gracefully_and_started_again_loses_nothing(start_worker, beat):
    seed()
    first = start_worker("graceful")
    start_worker("steady")
    job = service.start("admin_groups", "test", service.JobOptions.build(**SLOW))
    wait_for(lambda: rows_done(job) > 2_000, 60)
    first.stop()  # warm shutdown: the task in hand finishes its short budget
    assert first.process is not None
    assert first.process.returncode == 0
    start_worker("graceful-again")
    wait_for(lambda: finished(job), 180)
    assert job.status == JobStatus.SUCCEEDED
    assert assert_sound(job).rows_done == ROWS


def test_app_transactions_holding_rows_wait_at_most_one_batch(start_worker, beat):
    seed()
    start_worker()
    start_worker()
    waits: list[float] = []
    stop = threading.Event()

    def app() -> None:
        rng = random.Random(7)
        with connect() as conn:
            while not stop.is_set():
                ids = sorted(rng.sample(range(1, ROWS + 1), 5))
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
        job = service.start("admin_groups", "test", service.JobOptions.build(**SLOW))
        wait_for(lambda: finished(job), 180)
    finally:
        stop.set()
        thread.join(30)
    assert job.status == JobStatus.SUCCEEDED
    assert_sound(job)
    assert len(waits) > 10, len(waits)
    # Batches aim at 0.2 s; an app transaction never queues behind more than one.
    assert max(waits) < 1.0, max(waits)


def connect() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    )
