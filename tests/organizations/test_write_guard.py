"""From the expand deploy on, no writer can put NULL back into a filled admin link."""

import pytest
from django.core.management import call_command
from django.db import connection

from backfill.models import JobStatus
from organizations.models import Organization
from tests.data import app_session, seed
from tests.invariants import assert_sound

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = "organizations_organization"


def guard_objects() -> dict[str, bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass "
            "AND tgname LIKE '%%keep_filled'), "
            "EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = %s AND indexname LIKE '%%pending')",
            [TABLE, TABLE],
        )
        trigger, index = cursor.fetchone()
    return {"trigger": trigger, "index": index}


def test_a_stale_instance_saved_after_its_batch_keeps_its_group(run_sync):
    seed(300, share=0.2, existing_groups=20)
    stale = Organization.objects.order_by("pk")[10]  # loaded before the backfill: admin None
    assert stale.admin_id is None
    job = run_sync(batch_size=100)
    stale.name = "Edited In A Form"
    stale.save()
    stale.refresh_from_db()
    assert stale.admin_id is not None
    assert job.status == JobStatus.SUCCEEDED
    assert_sound(job, renamed=frozenset({stale.pk}))


def test_update_bulk_update_and_raw_sql_cannot_empty_a_filled_row(run_sync):
    seed(100, share=0.2, existing_groups=20)
    run_sync()
    first, second, third = Organization.objects.order_by("pk")[:3]
    Organization.objects.filter(pk=first.pk).update(admin=None)
    second.admin_id = None  # type: ignore[assignment]
    Organization.objects.bulk_update([second], ["admin"])
    with app_session(autocommit=True) as old_app:
        old_app.execute(f"UPDATE {TABLE} SET admin_id = NULL WHERE id = %s", [third.pk])
    assert not Organization.objects.filter(admin__isnull=True).exists()


def test_an_old_app_server_still_inserts_rows_without_a_group_and_the_backfill_fills_them(
    run_sync,
):
    with app_session(autocommit=True) as old_app:
        old_app.execute(
            f"INSERT INTO {TABLE} (name, created_at, updated_at) VALUES ('Old Server', now(), now())"
        )
    assert Organization.objects.get(name="Old Server").admin_id is None
    job = run_sync()
    assert Organization.objects.get(name="Old Server").admin is not None
    assert_sound(job)


def test_the_contract_drops_the_guard_and_reversing_it_puts_the_guard_back(run_sync):
    assert guard_objects() == {"trigger": True, "index": True}
    seed(50, share=0.2, existing_groups=20)
    run_sync()
    try:
        call_command("migrate", "organizations", "0006", verbosity=0)
        assert guard_objects() == {"trigger": False, "index": False}
    finally:
        call_command("migrate", "organizations", "0005", verbosity=0)
    assert guard_objects() == {"trigger": True, "index": True}
