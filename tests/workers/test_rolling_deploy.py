"""During a rolling deploy, servers still on the old code insert rows without the new
value. A job keeps up with them, with real workers: it never fails because of them,
its slices stay few, and it succeeds soon after the inserts stop."""

import time

import pytest
from django.db import connection

from backfill.engine import checker, service
from backfill.engine.options import JobOptions
from backfill.models import Event, Job, JobStatus, Slice
from backfill.registry import get_definition
from examples.models import Ticket
from organizations.models import Organization
from tests.data import OldAppVersion, seed
from tests.jobs import rows_done, status_of
from tests.processes import wait_for

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

ROWS = 20_000
# How long the old app version goes on inserting once the job has covered what existed.
INSERTING_AFTER_COVERED_SECONDS = 25

OLD_ORGANIZATION = (
    "INSERT INTO organizations_organization (name, search_name, created_at, updated_at) "
    "VALUES ('Old server ' || %(n)s::text, 'old server ' || %(n)s::text, now(), now())"
)
OLD_TICKET = (
    "INSERT INTO examples_ticket (id, subject) VALUES (gen_random_uuid(), 'old ' || %(n)s::text)"
)


def watch(job: Job, seen: set[str], until: float) -> None:
    """Poll the job's status until `until` (monotonic) or until it has finished."""
    while time.monotonic() < until:
        seen.add(status_of(job))
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
            return
        time.sleep(0.2)


def checked(name: str) -> str:
    """What `manage.py backfill check` says now."""
    summary = checker.check(get_definition(name)).summary()
    assert "fill()" not in summary
    return summary


def keep_up(name: str, old_app: OldAppVersion, concurrency: int) -> tuple[Job, set[str], int]:
    """Start a job while the old app version inserts; stop it some time after the job has
    covered the rows that existed; return the job once it has finished, every status
    seen and the slices it had at the start."""
    seen: set[str] = set()
    with old_app:
        job = service.start(name, "test", JobOptions.build(concurrency=concurrency))
        initial = Slice.objects.filter(job=job).count()
        wait_for(lambda: rows_done(job) >= ROWS or status_of(job) == JobStatus.FAILED, 180)
        wait_for(lambda: f"job #{job.pk} fills them as they arrive" in checked(name), 30)
        watch(job, seen, time.monotonic() + INSERTING_AFTER_COVERED_SECONDS)
    stopped = time.monotonic()
    watch(job, seen, stopped + 120)
    seen.add(status_of(job))
    assert job.status == JobStatus.SUCCEEDED, (seen, job.error)
    assert time.monotonic() - stopped < 120
    return job, seen, initial


def test_a_job_keeps_up_with_an_old_app_version_inserting_organizations_without_admin(
    start_worker,
):
    seed(ROWS)
    start_worker()
    start_worker()
    old_app = OldAppVersion(OLD_ORGANIZATION)
    job, seen, initial = keep_up("admin_groups", old_app, concurrency=2)
    assert JobStatus.FAILED not in seen
    assert old_app.inserted >= 200
    assert Organization.objects.filter(admin__isnull=True).count() == 0
    assert Slice.objects.filter(job=job).count() <= initial + 4
    assert Event.objects.filter(job=job, action="arrivals").exists()


def test_a_job_on_uuid_keys_sweeps_rows_an_old_app_version_inserts_anywhere(start_worker):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO examples_ticket (id, subject) "
            "SELECT gen_random_uuid(), 'ticket ' || g FROM generate_series(1, %s) g",
            [ROWS],
        )
    start_worker()
    start_worker()
    old_app = OldAppVersion(OLD_TICKET)
    job, seen, initial = keep_up("ticket_codes", old_app, concurrency=2)
    assert JobStatus.FAILED not in seen
    assert old_app.inserted >= 200
    assert Ticket.objects.filter(code__isnull=True).count() == 0
    assert Slice.objects.filter(job=job).count() <= initial + 4
    assert not Event.objects.filter(job=job, action="recheck").exists()
