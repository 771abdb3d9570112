"""An expression's batch is one statement, filled and logged on the server: locking its
rows first, or writing first and giving way to locking first when a row is held or
changed under it."""

import dataclasses
import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backfill.conf import BatchLimits
from backfill.engine import expression_fill, runner, service
from backfill.engine.batch import BatchResult, run_batch
from backfill.engine.options import JobOptions
from backfill.engine.runner import SliceWork
from backfill.models import Slice, Write
from backfill.registry import get_definition
from organizations.backfills import SearchNames
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


def search_names_emptied(rows: int) -> tuple[Slice, list[int]]:
    """`rows` organizations without a search name, the first slice of a job leased."""
    seed(rows)
    Organization.objects.update(search_name=None)
    slc = leased_slice("search_names")
    return slc, list(Organization.objects.order_by("pk").values_list("pk", flat=True))


def first_twenty(slc: Slice, lock_first: bool = True) -> BatchResult:
    limits = BatchLimits.from_settings()
    return run_batch(
        get_definition("search_names"), slc.pk, OWNER, 20, limits, lock_first=lock_first
    )


def test_a_batch_skips_the_row_the_app_holds_and_logs_what_it_wrote(local_queue):
    slc, keys = search_names_emptied(200)
    held = keys[3]
    with app_session() as app:
        app.execute("SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE", [held])
        with CaptureQueriesContext(connection) as queries:
            result = first_twenty(slc)
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


FILLS = ("WITH candidates", "WITH filled")


def fill_statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith(FILLS)]


def test_a_batch_writing_first_writes_and_logs_without_locking_first(local_queue):
    slc, keys = search_names_emptied(200)
    with CaptureQueriesContext(connection) as queries:
        result = first_twenty(slc, lock_first=False)
    (statement,) = fill_statements(queries)
    assert "FOR UPDATE" not in statement
    assert "candidates" not in statement
    assert (result.rows_selected, result.rows_changed, result.fell_back) == (20, 20, False)
    worked = Slice.objects.get(pk=slc.pk)
    assert (worked.rows_done, worked.cursor, worked.rows_skipped) == (20, str(keys[19]), 0)
    (log,) = Write.objects.filter(job_id=slc.job_id)
    written = dict(Organization.objects.filter(pk__in=keys[:20]).values_list("pk", "search_name"))
    assert dict(zip(log.keys, log.values, strict=True)) == {str(k): v for k, v in written.items()}
    assert all(v == Organization.objects.get(pk=k).name.lower() for k, v in written.items())
    assert Organization.objects.filter(pk__in=keys[20:], search_name__isnull=False).count() == 0


def test_a_batch_writing_first_meets_a_held_row_and_gives_way_to_locking_first(local_queue):
    slc, keys = search_names_emptied(200)
    held = keys[3]
    with app_session() as app:
        app.execute("SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE", [held])
        with CaptureQueriesContext(connection) as queries:
            result = first_twenty(slc, lock_first=False)
        app.rollback()
    writing_first, locking_first = fill_statements(queries)
    assert "FOR UPDATE" not in writing_first
    assert "FOR UPDATE SKIP LOCKED" in locking_first
    assert (result.rows_selected, result.rows_changed, result.fell_back) == (19, 19, True)
    worked = Slice.objects.get(pk=slc.pk)
    assert (worked.rows_done, worked.cursor, worked.rows_skipped) == (19, str(keys[19]), 1)
    assert Organization.objects.get(pk=held).search_name is None
    # The rolled-back attempt left nothing: one log row, the locking batch's.
    (log,) = Write.objects.filter(job_id=slc.job_id)
    assert str(held) not in log.keys
    assert len(log.keys) == 19
    assert Organization.objects.filter(search_name__isnull=False).count() == 19


def test_a_row_the_app_changes_under_a_batch_writing_first_is_filled_not_passed_over(
    local_queue, monkeypatch
):
    """The app renames a row and commits while the writing-first UPDATE waits on
    it: the UPDATE follows the row to its new version, tests it again and
    writes it from its new name."""
    monkeypatch.setattr(expression_fill, "WRITE_FIRST_LOCK_TIMEOUT_MS", 5_000)
    slc, keys = search_names_emptied(200)
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
            dataclasses.replace(BatchLimits.from_settings(), lock_timeout_ms=5_000),
            lock_first=False,
        )
        commit_soon.join()
    assert (result.rows_changed, result.fell_back) == (20, False)
    assert Organization.objects.get(pk=renamed).search_name == "renamed meanwhile"
    (log,) = Write.objects.filter(job_id=slc.job_id)
    assert dict(zip(log.keys, log.values, strict=True))[str(renamed)] == "renamed meanwhile"
    worked = Slice.objects.get(pk=slc.pk)
    assert (worked.rows_done, worked.rows_skipped) == (20, 0)


def test_a_batch_writing_first_on_a_partitioned_table_writes_its_key_range_only(
    local_queue, settings
):
    """The partitions' ctids repeat, and a hash share spans both: the batch's
    200 keys are the first partition's, and only they are written."""
    settings.BACKFILL_SLICES_PER_WORKER = 1
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO examples_measurement (id, value, unit) "
            "SELECT g + p, g, NULL FROM generate_series(1, 200) g, (VALUES (0), (500000)) v(p)"
        )
        cursor.execute(
            "SELECT count(DISTINCT tableoid), count(DISTINCT ctid), count(*) "
            "FROM examples_measurement"
        )
        partitions, ctids, rows = cursor.fetchone()
        assert partitions == 2
        assert ctids < rows  # the same ctid in both partitions
    slc = leased_slice("measurement_units")
    result = run_batch(
        get_definition("measurement_units"),
        slc.pk,
        OWNER,
        200,
        BatchLimits.from_settings(),
        lock_first=False,
    )
    assert (result.rows_changed, result.fell_back) == (200, False)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id < 500001, count(*) FILTER (WHERE unit IS NULL), count(*) "
            "FROM examples_measurement GROUP BY 1 ORDER BY 1"
        )
        assert cursor.fetchall() == [(False, 200, 200), (True, 0, 200)]
    (log,) = Write.objects.filter(job_id=slc.job_id)
    assert sorted(int(k) for k in log.keys) == list(range(1, 201))


@pytest.fixture
def fallbacks_forgotten():
    runner.last_fallback.clear()
    yield
    runner.last_fallback.clear()


def test_after_a_fall_back_the_worker_locks_first_for_a_while(
    local_queue, fallbacks_forgotten, settings
):
    settings.BACKFILL_SLICES_PER_WORKER = 1
    settings.BACKFILL_BATCH_SIZE = 50
    slc, _ = search_names_emptied(200)
    Slice.objects.filter(pk=slc.pk).update(lease_owner="", lease_expires_at=None)
    work = SliceWork(slc.pk, OWNER, budget_seconds=1.0)
    assert work.may_write_first(slc.job_id)
    held = Organization.objects.order_by("pk").values_list("pk", flat=True)[5]
    with app_session() as app:
        app.execute("SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE", [held])
        # The runner clears Django's query log after every batch: a wrapper keeps them.
        statements: list[str] = []

        def keep(run: Any, statement: str, *rest: Any) -> Any:
            statements.append(statement)
            return run(statement, *rest)

        with connection.execute_wrapper(keep):
            work.run()
        app.rollback()
    fills = [statement for statement in statements if statement.startswith(FILLS)]
    # The first batch wrote first and gave way; every later one locked first.
    assert len(fills) >= 3
    assert "FOR UPDATE" not in fills[0]
    assert all("FOR UPDATE SKIP LOCKED" in statement for statement in fills[1:])
    assert not work.may_write_first(slc.job_id)
    period = work.limits.lock_first_seconds
    runner.last_fallback[slc.job_id] = time.monotonic() - period - 1
    assert work.may_write_first(slc.job_id)
    assert Organization.objects.filter(search_name__isnull=True).count() == 1


@pytest.mark.parametrize("mode", ["SHARE", "ACCESS EXCLUSIVE"])
def test_a_batch_whose_locking_first_times_out_too_keeps_the_worker_locking_first(
    local_queue, fallbacks_forgotten, mode
):
    """A table lock stops both statements: the retry must not write first again.
    ACCESS EXCLUSIVE stops even the read of where the range ends: that wait
    too is the savepoint's, so the batch still falls back and times out as
    a lock timeout, not as a failed transaction."""
    slc, _ = search_names_emptied(100)
    Slice.objects.filter(pk=slc.pk).update(lease_owner="", lease_expires_at=None)
    work = SliceWork(slc.pk, OWNER, budget_seconds=0.5)
    with app_session() as app:
        app.execute(f"LOCK TABLE organizations_organization IN {mode} MODE")
        work.run()
        app.rollback()
    assert Slice.objects.get(pk=slc.pk).lock_timeouts >= 1
    assert not work.may_write_first(slc.job_id)


class SearchNamesOfEvenKeys(SearchNames):
    """search_names, with an expression that gives NULL for odd keys."""

    name = "test_search_names_of_even_keys"
    expression = "CASE WHEN mod(id, 2) = 0 THEN lower(name) END"


def filled_search_names() -> int:
    return Organization.objects.filter(search_name__isnull=False).count()


@pytest.mark.parametrize("lock_first", [True, False], ids=["locking first", "writing first"])
def test_rows_the_expression_leaves_null_are_neither_counted_nor_logged(
    register, local_queue, lock_first
):
    register(SearchNamesOfEvenKeys)
    seed(200)
    Organization.objects.update(search_name=None)
    slc = leased_slice(SearchNamesOfEvenKeys.name)
    definition = get_definition(SearchNamesOfEvenKeys.name)
    limits = BatchLimits.from_settings()
    result = run_batch(definition, slc.pk, OWNER, 20, limits, lock_first=lock_first)
    filled = filled_search_names()
    assert 0 < filled < 20
    assert result.rows_changed == filled
    assert Slice.objects.get(pk=slc.pk).rows_done == filled
    (log,) = Write.objects.filter(job_id=slc.job_id)
    assert len(log.keys) == filled


def test_the_fill_of_held_rows_counts_only_the_rows_it_gave_a_value(register):
    register(SearchNamesOfEvenKeys)
    seed(20)
    Organization.objects.update(search_name=None)
    keys = list(Organization.objects.values_list("pk", flat=True))
    with connection.cursor() as cursor:
        counted = get_definition(SearchNamesOfEvenKeys.name).fill(cursor, [(k,) for k in keys])
    assert counted == filled_search_names() == sum(1 for k in keys if k % 2 == 0)
