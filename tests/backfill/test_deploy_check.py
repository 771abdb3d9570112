"""The deploy-time check: unapplied contract migrations whose backfill is not finished."""

import io

import pytest
from django.core.checks import run_checks
from django.core.management import call_command

from backfill.engine import service
from tests.data import seed
from tests.processes import manage

pytestmark = pytest.mark.django_db(transaction=True)

CONTRACT = "organizations.0006_organization_admin_contract"


def backfill_warnings(**options: object) -> list[str]:
    return [
        f"{m.id}: {m.msg} {m.hint}"
        for m in run_checks(tags=["backfill"], **options)  # type: ignore[arg-type]
    ]


def test_an_unfinished_backfill_is_named_before_migrate_and_at_deploy():
    seed(50)
    before_migrate = backfill_warnings(databases=["default"])
    at_deploy = backfill_warnings(include_deployment_checks=True)
    for warnings in (before_migrate, at_deploy):
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(f"backfill.W001: {CONTRACT} will be refused: 50 rows")
        assert "`manage.py backfill start admin_groups`" in warnings[0]
    result = manage("check", "--deploy", "--tag", "backfill")
    assert result.returncode == 0
    assert "backfill.W001" in result.stderr + result.stdout


def test_while_a_job_is_active_the_hint_names_it_instead_of_start(local_queue):
    seed(50)
    job = service.start("admin_groups", "test")  # queued: no batch has run
    (warning,) = backfill_warnings(databases=["default"])
    assert f"let job #{job.pk} (running) end" in warning
    assert "backfill start" not in warning


def test_a_finished_backfill_gives_no_warning():
    seed(50)
    call_command("backfill", "run", "admin_groups", "--sync", stdout=io.StringIO())
    assert backfill_warnings(databases=["default"]) == []
    assert backfill_warnings(include_deployment_checks=True) == []


def test_other_commands_do_not_read_the_tables_for_it():
    seed(50)
    assert backfill_warnings() == []
