"""Rows an old app version inserts without the value are named as such by `check`, the
deploy check and the contract, instead of as rows the backfill left behind."""

from collections.abc import Sequence

import pytest
from django.db.backends.utils import CursorWrapper

from backfill.engine import checker, service
from backfill.engine.options import JobOptions
from backfill.models import JobStatus
from backfill.registry import Row, get_definition
from backfill.schema.checks import unfinished_contracts
from organizations.backfills import SearchNames
from organizations.models import Organization
from tests.data import app_session, seed
from tests.processes import manage

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("back_to_expanded_state"),
]

OLD_INSERT = (
    "INSERT INTO organizations_organization (name, search_name, created_at, updated_at) "
    "VALUES ('Old server', 'old server', now(), now())"
)
SAID = (
    "3 rows were inserted without a value in the last 1 minute: "
    "an old app version is still writing; once every server runs the new version, "
    "run `manage.py backfill start admin_groups`"
)


def old_app_inserts(rows: int) -> None:
    with app_session(autocommit=True) as old_server:
        for _ in range(rows):
            old_server.execute(OLD_INSERT)


def test_rows_inserted_after_the_job_are_named_by_check_the_deploy_check_and_the_contract(
    run_sync,
):
    seed(200)
    job = run_sync()
    assert job.status == JobStatus.SUCCEEDED
    old_app_inserts(3)
    result = checker.check(get_definition("admin_groups"))
    assert result.summary() == SAID
    assert (result.pending, result.arrived) == (3, 3)
    assert "fill()" not in result.summary()
    [warning] = unfinished_contracts("default")
    assert SAID in warning.msg
    migrate = manage("migrate", "organizations", "0006")
    assert migrate.returncode == 1
    assert "Traceback" not in migrate.stderr
    assert SAID in migrate.stderr.strip().splitlines()[-1]


class SearchNamesSometimesNull(SearchNames):
    """A fill that writes NULL into some rows: they are written after every look, by the
    job's own batches, yet they are rows left behind, not arrivals."""

    name = "test_search_names_sometimes_null"

    def fill(self, cursor: CursorWrapper, rows: Sequence[Row]) -> int:
        cursor.execute(
            "UPDATE organizations_organization "
            "SET search_name = CASE WHEN id %% 50 = 0 THEN NULL ELSE lower(name) END "
            "WHERE id = ANY(%s)",
            [[row[0] for row in rows]],
        )
        return int(cursor.rowcount)


@pytest.mark.timeout(120)
def test_rows_a_fill_rewrites_with_null_fail_the_job_after_the_recheck_budget(
    register, local_queue, drain, settings
):
    register(SearchNamesSometimesNull)
    settings.BACKFILL_MAX_RECHECKS = 2
    seed(300)
    Organization.objects.update(search_name=None)
    job = drain(service.start(SearchNamesSometimesNull.name, "test", JobOptions.build()))
    assert job.status == JobStatus.FAILED
    assert "still pending after 2 rechecks" in job.error
