"""The whole service with real Celery worker processes, Redis and PostgreSQL."""

import random
import threading
import time

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from backfill.engine import service
from backfill.engine.options import JobOptions
from backfill.models import Job, JobStatus, Slice
from organizations import audit
from organizations.models import Organization
from tests.data import WORKER_ROWS, app_session, seed
from tests.invariants import assert_sound
from tests.jobs import finished, rows_done, status_of
from tests.processes import wait_for
from workers.dispatch import CeleryDispatcher

pytestmark = [pytest.mark.workers, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_two_workers_fill_every_row_over_several_slices(start_worker):
    seed(WORKER_ROWS, existing_groups=100)
    start_worker()
    start_worker()
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=2))
    # admin_groups partitions by name: one hash share per worker, not key ranges.
    assert sorted(job.slices.values_list("modulus", "residue")) == [(2, 0), (2, 1)]
    wait_for(lambda: finished(job))
    assert job.status == JobStatus.SUCCEEDED
    report = assert_sound(job)
    assert report.rows_done == WORKER_ROWS
    assert {s.status for s in job.slices.all()} == {"done"}


# The job's own batches waiting on a lock over the naming rows: a counter row
# or a group name another batch inserted and has not committed yet.
NAMING_LOCK_WAITS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
  AND (query LIKE '%%organizations_adminnamecounter%%' OR query LIKE '%%auth_group%%')
"""


def test_two_workers_on_a_skewed_table_never_wait_on_each_other(start_worker):
    """A fifth of the rows share one name: the slices still never queue behind each other."""
    seed(30_000, share=0.3, existing_groups=100, hot_share=0.2)
    start_worker()
    start_worker()
    waits, stop = [], threading.Event()

    def sample() -> None:
        with app_session(autocommit=True) as session:
            while not stop.is_set():
                row = session.execute(NAMING_LOCK_WAITS).fetchone()
                waits.append(row[0] if row else 0)
                time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    job = service.start("admin_groups", "test", JobOptions.build(batch_size=500, concurrency=2))
    wait_for(lambda: finished(job))
    stop.set()
    sampler.join()
    assert job.status == JobStatus.SUCCEEDED
    assert len(waits) > 100  # the sampler saw the run
    assert sum(waits) == 0
    assert sum(job.slices.values_list("lock_timeouts_total", flat=True)) == 0
    assert_sound(job)
    assert audit.skipped_numbers() == 0


def test_the_workers_revert_a_job_and_a_new_job_fills_again(start_worker):
    seed(20_000, existing_groups=100)
    before = set(Group.objects.values_list("pk", flat=True))
    start_worker()
    start_worker()
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=2))
    wait_for(lambda: finished(job))
    assert job.status == JobStatus.SUCCEEDED
    job = service.revert("admin_groups", "test")
    assert job.status == JobStatus.REVERTING
    wait_for(lambda: finished(job))
    assert job.status == JobStatus.REVERTED
    assert set(Group.objects.values_list("pk", flat=True)) == before
    assert Organization.objects.filter(admin__isnull=True).count() == 20_000
    assert sum(job.slices.values_list("rows_reverted", flat=True)) == 20_000
    again = service.start("admin_groups", "test", JobOptions.build(concurrency=2))
    wait_for(lambda: finished(again))
    assert_sound(again)


def test_pause_stops_progress_resume_continues_and_cancel_ends_the_job(start_worker):
    seed(WORKER_ROWS, existing_groups=100)
    start_worker()
    start_worker()
    options = JobOptions.build(batch_size=200, concurrency=2, pause_ms=100)
    job = service.start("admin_groups", "test", options)
    wait_for(lambda: rows_done(job) > 2_000)

    service.pause("admin_groups", "test")
    wait_for(lambda: not Slice.objects.filter(job=job).exclude(lease_owner="").exists(), 30)
    paused_at = rows_done(job)
    time.sleep(2)
    assert rows_done(job) == paused_at
    assert Organization.objects.filter(admin__isnull=False).count() == paused_at

    service.resume("admin_groups", "test")
    wait_for(lambda: rows_done(job) > paused_at + 1_000)

    service.cancel("admin_groups", "test")
    wait_for(lambda: status_of(job) == JobStatus.CANCELLED, 30)
    assert rows_done(job) == Organization.objects.filter(admin__isnull=False).count() < WORKER_ROWS

    job = service.start("admin_groups", "test", JobOptions.build(concurrency=2))
    wait_for(lambda: finished(job))
    assert job.status == JobStatus.SUCCEEDED
    assert_sound(job, exact_counters=False)
    assert not Organization.objects.filter(admin__isnull=True).exists()


def both_workers_busy(job: Job) -> bool:
    """With concurrency 2, one-task workers and prefetch 1, each holds one lease."""
    return Slice.objects.filter(job=job).exclude(lease_owner="").count() >= 2


@pytest.mark.chaos
def test_killed_worker_loses_at_most_one_batch_and_the_job_finishes(start_worker, beat):
    seed(WORKER_ROWS, existing_groups=100)
    victim = start_worker("victim")
    start_worker("survivor")
    options = JobOptions.build(batch_size=200, concurrency=2, pause_ms=300)
    job = service.start("admin_groups", "test", options)
    kills = 0
    while kills < 3:
        wait_for(lambda: finished(job) or (rows_done(job) > 0 and both_workers_busy(job)))
        if finished(job):
            break
        time.sleep(0.3)  # mid-batch, most likely
        victim.kill()
        kills += 1
        victim = start_worker(f"victim-{kills}")
    assert kills == 3, "the job ended before the worker could be killed three times"
    wait_for(lambda: finished(job), 180)
    assert job.status == JobStatus.SUCCEEDED
    report = assert_sound(job)
    assert report.rows_done == WORKER_ROWS


def test_a_slice_delivered_twice_is_worked_once(start_worker):
    seed(20_000, existing_groups=100)
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=2))
    for slice_id in Slice.objects.filter(job=job).values_list("pk", flat=True):
        CeleryDispatcher().dispatch(slice_id)
        CeleryDispatcher().dispatch(slice_id)
    start_worker()
    start_worker()
    wait_for(lambda: finished(job))
    report = assert_sound(job)
    assert report.rows_done == 20_000


def test_the_app_inserts_renames_and_deletes_during_the_job(start_worker):
    seed(WORKER_ROWS, existing_groups=100)
    start_worker()
    start_worker()
    stop = threading.Event()
    renamed: set[int] = set()
    errors: list[BaseException] = []
    legacy = list(Organization.objects.values_list("pk", flat=True))

    def app() -> None:
        rng = random.Random(1)
        try:
            while not stop.is_set():
                Organization.objects.create(
                    name=rng.choice(["Shared Org 1", "Shared Org 2", "New Co"])
                )
                victim = Organization.objects.filter(pk=rng.choice(legacy)).first()
                if victim and rng.random() < 0.5:
                    victim.delete()
                elif victim:
                    victim.name = f"{victim.name} renamed"
                    victim.save(update_fields=["name"])
                    renamed.add(victim.pk)
                time.sleep(0.005)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=app)
    thread.start()
    try:
        job = service.start(
            "admin_groups", "test", JobOptions.build(batch_size=1000, concurrency=2)
        )
        wait_for(lambda: finished(job))
    finally:
        stop.set()
        thread.join(30)
    assert errors == []
    assert job.status == JobStatus.SUCCEEDED
    assert_sound(job, renamed=frozenset(renamed), exact_counters=False)


def test_a_slice_waiting_on_a_held_row_goes_on_once_released_without_the_sweeper(start_worker):
    """No beat runs here: the waiting slice's own delayed dispatch brings it back."""
    seed(2_000, existing_groups=100)
    last = Organization.objects.order_by("-pk").values_list("pk", flat=True)[0]
    app = app_session()
    try:
        app.execute("SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE", [last])
        start_worker()
        job = service.start("admin_groups", "test", JobOptions.build(concurrency=1))
        wait_for(lambda: Slice.objects.filter(job=job).exclude(held=[]).exists(), timeout=60)
        time.sleep(1.0)  # the slice keeps waiting, handed back between tries
        app.commit()
    finally:
        app.close()
    wait_for(lambda: finished(job), timeout=60)
    assert status_of(job) == JobStatus.SUCCEEDED
    assert Organization.objects.get(pk=last).admin_id is not None
    assert_sound(job)
