"""The engine end to end in one process (`run --sync`), against real PostgreSQL."""

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from backfill.engine import checker, service
from backfill.errors import ActiveJobExists, InvalidTransition
from backfill.models import Event, JobStatus, Slice
from backfill.registry import get_definition
from organizations.models import Organization
from tests.data import app_session, seed
from tests.invariants import assert_sound

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_sync_run_fills_every_row_with_its_own_group(run_sync):
    seed(20_000, share=0.2, existing_groups=20)
    job = run_sync(batch_size=500)
    assert job.status == JobStatus.SUCCEEDED
    report = assert_sound(job)
    assert report.rows_done == 20_000
    assert job.rows_total == 20_000
    assert not job.rows_total_is_estimate
    assert checker.check(get_definition("admin_groups")).passed


def test_the_job_records_who_did_what(run_sync):
    seed(100, share=0.2, existing_groups=20)
    job = run_sync()
    actions = list(Event.objects.filter(job=job).values_list("action", "actor"))
    assert actions[0] == ("start", "test")
    assert ("succeed", "scheduler") in actions


def test_pre_existing_groups_are_never_taken_over(run_sync):
    seed(3_000, share=0.5, existing_groups=200)
    before = dict(Group.objects.values_list("pk", "name"))
    job = run_sync(batch_size=300)
    assert_sound(job)
    assert not Organization.objects.filter(admin_id__in=before).exists()
    assert dict(Group.objects.filter(pk__in=before).values_list("pk", "name")) == before


def test_a_second_start_is_refused_while_a_job_is_active(local_queue):
    seed(100, share=0.2, existing_groups=20)
    service.start("admin_groups", "test")
    with pytest.raises(ActiveJobExists, match="already has an active job"):
        service.start("admin_groups", "test")


def test_resume_of_a_finished_job_is_refused(run_sync):
    seed(100, share=0.2, existing_groups=20)
    run_sync()
    with pytest.raises(InvalidTransition, match="succeeded, not paused"):
        service.resume("admin_groups", "test")


def test_rows_held_by_the_app_are_filled_once_released(run_sync):
    seed(2_000, share=0, existing_groups=20)
    held = Organization.objects.order_by("pk").values_list("pk", flat=True)[500]
    app = app_session()
    app.execute("SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE", [held])
    release = threading.Timer(2.0, app.commit)
    release.start()
    try:
        job = run_sync(batch_size=200)
    finally:
        release.join()
        app.close()
    assert job.status == JobStatus.SUCCEEDED
    assert Organization.objects.get(pk=held).admin_id is not None
    assert Slice.objects.filter(job=job, passes__gt=1).exists()
    assert_sound(job)


def test_rows_inserted_beyond_the_range_are_filled_before_success(drain):
    seed(1_000, share=0.2, existing_groups=20)
    job = service.start("admin_groups", "test")
    Organization.objects.bulk_create(Organization(name=f"Late {i}") for i in range(50))
    job = drain(job)
    assert job.status == JobStatus.SUCCEEDED
    assert not Organization.objects.filter(admin__isnull=True).exists()
    assert_sound(job)


def test_revert_deletes_exactly_the_groups_the_job_made(run_sync):
    seed(2_000, share=0.3, existing_groups=100)
    app_made = Organization.objects.create(name="Made By The App")
    before = set(Group.objects.values_list("pk", flat=True))
    run_sync()
    job = service.revert_sync("admin_groups", "test")
    assert job.status == JobStatus.REVERTED
    assert sum(job.slices.values_list("rows_reverted", flat=True)) == 2_000
    assert set(Group.objects.values_list("pk", flat=True)) == before
    assert Organization.objects.filter(admin__isnull=True).count() == 2_000
    app_made.refresh_from_db()
    assert app_made.admin_id is not None
    job = run_sync()
    assert_sound(job)


def test_revert_is_refused_while_a_job_runs(local_queue):
    seed(100, share=0.2, existing_groups=20)
    service.start("admin_groups", "test")
    with pytest.raises(InvalidTransition, match="cancel it first"):
        service.revert("admin_groups", "test")


def test_an_expression_definition_fills_its_column(run_sync):
    seed(3_000, share=0.2, existing_groups=20)
    Organization.objects.update(search_name=None)
    job = run_sync("search_names", batch_size=700)
    assert job.status == JobStatus.SUCCEEDED
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM organizations_organization WHERE search_name IS DISTINCT FROM lower(name)"
        )
        assert cursor.fetchone()[0] == 0


def test_the_app_path_and_the_expression_agree():
    organization = Organization.objects.create(name="ÀÉÎ Straße ДОМ İstanbul")
    with connection.cursor() as cursor:
        cursor.execute("SELECT lower(%s)", [organization.name])
        assert organization.search_name == cursor.fetchone()[0]
    organization.name = "Renamed"
    organization.save(update_fields=["name"])
    assert organization.search_name == "renamed"
