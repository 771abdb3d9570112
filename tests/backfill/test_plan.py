"""`backfill plan`: the batch plan, a timed sample batch and a projection, changing nothing."""

import io
import json

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection

from backfill.engine import plan as plan_module
from backfill.models import Write
from backfill.nullability import has_not_valid_not_null
from backfill.registry import get_definition
from organizations.models import AdminNameCounter, Organization
from tests.data import app_session, seed
from tests.processes import manage

pytestmark = pytest.mark.django_db(transaction=True)


def snapshot() -> tuple[int, int, int]:
    return (
        Organization.objects.filter(admin__isnull=True).count(),
        Group.objects.count(),
        AdminNameCounter.objects.count(),
    )


def test_plan_measures_a_sample_batch_projects_and_changes_nothing():
    seed(3_000)
    with app_session(autocommit=True) as session:
        session.execute("ANALYZE organizations_organization")  # as a live table has statistics
    before = snapshot()
    result = manage("backfill", "plan", "admin_groups", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert snapshot() == before  # the sample batch was rolled back
    assert (plan["pending"], plan["pending_is_estimate"]) == (3_000, False)
    # On 3,000 rows, all pending, a scan is the planner's right choice; it says so.
    scans = any("Seq Scan" in line for line in plan["batch_plan"])
    assert plan["uses_index"] is not scans
    assert any("scans the table" in w for w in plan["warnings"]) is scans
    assert plan["sample_rows"] > 0
    assert plan["rows_per_second"] > 0
    assert plan["wal_bytes_per_row"] > 0
    assert [p["workers"] for p in plan["projections"]] == [1, 2, 4]
    one, two, four = plan["projections"]
    assert one["seconds"] == pytest.approx(3_000 / plan["rows_per_second"], rel=0.02, abs=0.002)
    assert two["seconds"] == pytest.approx(one["seconds"] / 2, rel=0.02, abs=0.002)
    assert one["wal_mb"] == four["wal_mb"] > 0
    # From PostgreSQL 18 the NOT NULL itself is added NOT VALID: one exclusive lock, not three.
    exclusive_after_validate = (
        [] if has_not_valid_not_null(connection) else ["ACCESS EXCLUSIVE"] * 2
    )
    assert [s["lock"].split(" (")[0] for s in plan["contract_steps"]] == [
        "ACCESS EXCLUSIVE",
        "SHARE UPDATE EXCLUSIVE",
        *exclusive_after_validate,
    ]
    assert all("scans the table" in w for w in plan["warnings"])


def test_plan_warns_of_a_long_transaction_and_prints_for_people(monkeypatch):
    seed(200)
    monkeypatch.setattr(plan_module, "LONG_TRANSACTION_SECONDS", 0)
    out = io.StringIO()
    with app_session() as holder:
        holder.execute("SELECT count(*) FROM organizations_organization")
        pid = holder.info.backend_pid
        call_command("backfill", "plan", "search_names", stdout=out)
    text = out.getvalue()
    # search_name has no pending-rows index: a warning says so; the count is still exact.
    assert "200 rows pending" in text
    assert "SCANS THE TABLE" in text
    assert "warning: the batch statement scans the table" in text
    assert "sample batch (rolled back)" in text
    assert "2 workers:" in text
    assert "VALIDATE CONSTRAINT: SHARE UPDATE EXCLUSIVE" in text
    assert f"warning: pid {pid} has been in a transaction" in text


def test_plan_of_an_unknown_backfill_is_one_line():
    result = manage("backfill", "plan", "no_such_thing")
    assert result.returncode == 2
    assert "unknown backfill 'no_such_thing'" in result.stderr


def test_plan_of_an_expression_explains_and_samples_a_batch_writing_first():
    """What the workers run: where the range ends, and one UPDATE of it."""
    seed(3_000)
    Organization.objects.update(search_name=None)
    found = plan_module.make_plan(get_definition("search_names"), sample_size=500)
    assert Organization.objects.filter(search_name__isnull=False).count() == 0  # rolled back
    assert not Write.objects.exists()
    text = "\n".join(found.batch_plan)
    assert "Update on organizations_organization" in text
    assert "LockRows" not in text  # no FOR UPDATE: the locking-first statement is not sampled
    assert found.sample_rows == 500
    assert found.pending == 3_000
