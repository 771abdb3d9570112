"""An expression's batch is one statement: locked, filled and logged on the server."""

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from psycopg import sql

from backfill.conf import BatchLimits
from backfill.engine import expression_fill, service
from backfill.engine.batch import run_batch
from backfill.engine.options import JobOptions
from backfill.models import Slice, Write
from backfill.registry import get_definition
from organizations.models import Organization
from tests.backfill.test_success_on_data import SearchNamesWithAWriter
from tests.data import app_session, seed

pytestmark = pytest.mark.django_db(transaction=True)

OWNER = "one-statement-test"


def leased_slice(definition: str) -> Slice:
    job = service.start(definition, "test", JobOptions.build(concurrency=1, pace=False))
    slc = Slice.objects.filter(job=job).order_by("number").first()
    Slice.objects.filter(pk=slc.pk).update(lease_owner="", lease_expires_at=None)
    acquired = Slice.objects.acquire(slc.pk, OWNER, 60)
    assert acquired is not None
    return acquired


def test_a_batch_skips_the_row_the_app_holds_and_logs_what_it_wrote(local_queue):
    seed(200)
    Organization.objects.update(search_name=None)
    slc = leased_slice("search_names")
    keys = list(Organization.objects.order_by("pk").values_list("pk", flat=True))
    held = keys[3]
    with app_session() as app:
        app.execute("SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE", [held])
        with CaptureQueriesContext(connection) as queries:
            result = run_batch(
                get_definition("search_names"), slc.pk, OWNER, 20, BatchLimits.from_settings()
            )
        app.rollback()
    fills = [q["sql"] for q in queries.captured_queries if "WITH candidates" in q["sql"]]
    assert len(fills) == 1
    assert "UPDATE" in fills[0]
    assert "INSERT INTO" in fills[0]
    assert (result.rows_selected, result.rows_changed) == (19, 19)
    worked = Slice.objects.get(pk=slc.pk)
    assert (worked.rows_done, worked.cursor) == (19, str(keys[19]))
    assert worked.rows_skipped == 1
    assert Organization.objects.get(pk=held).search_name is None
    (log,) = Write.objects.filter(job_id=slc.job_id)
    written = dict(Organization.objects.filter(pk__in=keys[:20]).values_list("pk", "search_name"))
    expected = {str(k): v for k, v in written.items() if k != held}
    assert dict(zip(log.keys, log.values, strict=True)) == expected
    assert all(v == Organization.objects.get(pk=k).name.lower() for k, v in written.items() if v)


def test_a_subclass_that_overrides_fill_is_called_through_fill():
    assert get_definition("search_names").set_expression() is not None
    assert SearchNamesWithAWriter().set_expression() is None


def fill_statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "WITH candidates" in q["sql"]]


def test_an_unlocked_batch_writes_and_logs_without_locking_first(local_queue):
    seed(200)
    Organization.objects.update(search_name=None)
    slc = leased_slice("search_names")
    keys = list(Organization.objects.order_by("pk").values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as queries:
        result = run_batch(
            get_definition("search_names"),
            slc.pk,
            OWNER,
            20,
            BatchLimits.from_settings(),
            unlocked=True,
        )
    (statement,) = fill_statements(queries)
    assert "FOR UPDATE" not in statement
    assert "ctid" in statement
    assert (result.rows_selected, result.rows_changed, result.contended) == (20, 20, False)
    worked = Slice.objects.get(pk=slc.pk)
    assert (worked.rows_done, worked.cursor, worked.rows_skipped) == (20, str(keys[19]), 0)
    (log,) = Write.objects.filter(job_id=slc.job_id)
    written = dict(Organization.objects.filter(pk__in=keys[:20]).values_list("pk", "search_name"))
    assert dict(zip(log.keys, log.values, strict=True)) == {str(k): v for k, v in written.items()}
    assert all(v == Organization.objects.get(pk=k).name.lower() for k, v in written.items())
    assert Organization.objects.filter(pk__in=keys[20:], search_name__isnull=False).count() == 0


def test_an_unlocked_batch_meeting_a_held_row_gives_way_to_the_locking_one(local_queue):
    seed(200)
    Organization.objects.update(search_name=None)
    slc = leased_slice("search_names")
    keys = list(Organization.objects.order_by("pk").values_list("pk", flat=True))
    held = keys[3]
    with app_session() as app:
        app.execute("SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE", [held])
        with CaptureQueriesContext(connection) as queries:
            result = run_batch(
                get_definition("search_names"),
                slc.pk,
                OWNER,
                20,
                BatchLimits.from_settings(),
                unlocked=True,
            )
        app.rollback()
    unlocked, locking = fill_statements(queries)
    assert "FOR UPDATE" not in unlocked
    assert "FOR UPDATE SKIP LOCKED" in locking
    assert (result.rows_selected, result.rows_changed, result.contended) == (19, 19, True)
    worked = Slice.objects.get(pk=slc.pk)
    assert (worked.rows_done, worked.cursor, worked.rows_skipped) == (19, str(keys[19]), 1)
    assert Organization.objects.get(pk=held).search_name is None
    # The rolled-back attempt left nothing: one log row, the locking batch's.
    (log,) = Write.objects.filter(job_id=slc.job_id)
    assert str(held) not in log.keys
    assert len(log.keys) == 19
    assert Organization.objects.filter(search_name__isnull=False).count() == 19


def test_a_row_the_app_changes_under_an_unlocked_batch_is_filled_not_passed_over(
    local_queue, monkeypatch
):
    """The app renames a candidate and commits while the unlocked UPDATE waits on
    it: the UPDATE follows the row to its new version, whose ctid is not the
    candidate's, and leaves it; the batch notices and the locking one fills it."""
    monkeypatch.setattr(expression_fill, "UNLOCKED_LOCK_TIMEOUT_MS", 5_000)
    seed(200)
    Organization.objects.update(search_name=None)
    slc = leased_slice("search_names")
    keys = list(Organization.objects.order_by("pk").values_list("pk", flat=True))
    renamed = keys[3]
    with app_session() as app:
        app.execute(
            "UPDATE organizations_organization SET name = 'Renamed Meanwhile' WHERE id = %s",
            [renamed],
        )
        commit_soon = threading.Timer(0.5, app.commit)
        commit_soon.start()
        result = run_batch(
            get_definition("search_names"),
            slc.pk,
            OWNER,
            20,
            BatchLimits.from_settings(),
            unlocked=True,
        )
        commit_soon.join()
    assert (result.rows_changed, result.contended) == (20, True)
    assert Organization.objects.get(pk=renamed).search_name == "renamed meanwhile"
    worked = Slice.objects.get(pk=slc.pk)
    assert (worked.rows_done, worked.rows_skipped) == (20, 0)


@pytest.mark.django_db
def test_the_unlocked_update_finds_rows_by_key_where_ctids_repeat_across_partitions():
    with connection.cursor() as cursor:
        assert expression_fill.row_locator(cursor, get_definition("search_names")) == sql.SQL(
            "ctid"
        )
        partitioned = get_definition("measurement_units")
        assert expression_fill.row_locator(cursor, partitioned) == sql.Identifier("id")
