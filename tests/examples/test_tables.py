"""Tables of other shapes, with real workers: UUID keys, pending rows bunched
before a gap of 10^12 in the ids, a range-partitioned table, a composite key."""

import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from backfill import BackfillIncomplete
from backfill.engine import checker, service
from backfill.engine.options import JobOptions
from backfill.engine.progress import job_progress
from backfill.errors import UnsupportedKey
from backfill.models import Job, JobStatus, Slice, Write
from backfill.nullability import has_not_valid_not_null
from backfill.registry import get_definition
from backfill.schema.gaps import waiting
from examples.models import Reading, Ticket
from tests.jobs import finished
from tests.processes import manage, wait_for

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def execute(statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description else []


def scan_ms() -> float:
    """One read of every measurement, as a DDL statement that scanned the table would."""
    started = time.perf_counter()
    execute("SELECT count(*) FROM examples_measurement WHERE unit IS NULL")
    return (time.perf_counter() - started) * 1000


def finish(job: Job) -> Job:
    wait_for(lambda: finished(job), timeout=180)
    return job


def test_a_uuid_keyed_table_is_filled_by_two_workers(start_worker):
    execute(
        "INSERT INTO examples_ticket (id, subject) "
        "SELECT gen_random_uuid(), 'ticket ' || g FROM generate_series(1, 20000) g"
    )
    start_worker()
    start_worker()
    job = service.start("ticket_codes", "test", JobOptions.build(concurrency=2))
    assert (job.rows_total, job.rows_total_is_estimate) == (20_000, False)
    slices = list(Slice.objects.filter(job=job).order_by("number"))
    bounds = [uuid.UUID(s.high) for s in slices]
    assert bounds == sorted(bounds)  # cut in PostgreSQL's uuid order, not text order
    assert all(b.after == a.high for a, b in itertools.pairwise(slices))
    job = finish(job)
    assert job.status == JobStatus.SUCCEEDED
    assert Ticket.objects.filter(code__isnull=True).count() == 0
    assert (
        execute("SELECT count(*) FROM examples_ticket WHERE code <> upper(left(md5(subject), 8))")[
            0
        ][0]
        == 0
    )
    progress = job_progress(job)
    assert (progress.rows_done, progress.rows_total, progress.fraction) == (20_000, 20_000, 1.0)
    logged = [
        key for keys in Write.objects.filter(job=job).values_list("keys", flat=True) for key in keys
    ]
    assert len(logged) == len(set(logged)) == 20_000


def test_pending_rows_bunched_before_a_gap_are_shared_by_both_slices(start_worker, settings):
    """The oldest 30% are pending, and the ids jump by 10^12 halfway: equal key
    ranges over [min, max] would give every pending row to the first slice."""
    settings.BACKFILL_SLICES_PER_WORKER = 1
    execute(
        "INSERT INTO examples_reading (id, value, label) SELECT g, g, "
        "CASE WHEN g <= 30000 THEN NULL ELSE 'new' END FROM generate_series(1, 50000) g"
    )
    execute(
        "INSERT INTO examples_reading (id, value, label) "
        "SELECT 1000000000000 + g, g, 'new' FROM generate_series(1, 50000) g"
    )
    start_worker()
    start_worker()
    job = finish(service.start("reading_labels", "test", JobOptions.build(concurrency=2)))
    assert job.status == JobStatus.SUCCEEDED
    assert Reading.objects.filter(label__isnull=True).count() == 0
    # Each of the two first slices takes about half; an idle worker may split
    # either again, so no slice may have filled much more than half, and the
    # second (the range past the first half of the pending rows) took its part.
    done = list(
        Slice.objects.filter(job=job).order_by("number").values_list("rows_done", flat=True)
    )
    print(f"rows filled by each slice: {done}")
    assert sum(done) == 30_000
    assert max(done) <= 0.65 * 30_000, done
    assert done[1] >= 0.2 * 30_000, done


@pytest.fixture
def contract_reversed() -> Iterator[None]:
    """Leave the example app between expand and contract, whatever the test did."""
    yield
    call_command("migrate", "examples", "0002", verbosity=0)


def nullable(table: str, column: str) -> dict[str, bool]:
    rows = execute(
        "SELECT c.relname, NOT a.attnotnull FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE c.relname LIKE %s AND a.attname = %s AND c.relkind IN ('r', 'p') ORDER BY 1",
        [f"{table}%", column],
    )
    return dict(rows)


# Statements of the expand and contract steps that block the table's writers
# (however briefly); VALIDATE and CONCURRENTLY let reads and writes through.
NOT_BLOCKING = ("VALIDATE CONSTRAINT", "CONCURRENTLY", "CREATE OR REPLACE FUNCTION")


def timed_migrate(*args: str) -> list[tuple[str, float]]:
    """Run migrate, timing each DDL statement; returns those that block writers."""
    timings: list[tuple[str, float, bool]] = []

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            text = " ".join(sql.split())
            upper = text.upper()
            if upper.startswith(("CREATE", "ALTER", "DROP")):
                blocking = not any(word in upper for word in NOT_BLOCKING)
                timings.append((text[:100], (time.perf_counter() - started) * 1000, blocking))

    # Inside the gap waiter, so that only the statements are timed, not the look before each.
    with waiting(connection.alias), connection.execute_wrapper(timed):
        call_command("migrate", *args, verbosity=0)
    print(f"migrate {' '.join(args)} (ms; * blocks writers):")
    for text, ms, blocking in timings:
        print(f"  {ms:8.2f} {'*' if blocking else ' '} {text}")
    return [(text, ms) for text, ms, blocking in timings if blocking]


def test_a_partitioned_table_is_guarded_backfilled_and_contracted(start_worker, contract_reversed):
    """1,000,000 rows over two partitions, a tenth of them legacy rows without unit."""
    execute(
        "INSERT INTO examples_measurement (id, value, unit) SELECT g, g, "
        "CASE WHEN mod(g, 10) = 0 THEN NULL ELSE 'kg' END FROM generate_series(1, 1000000) g"
    )
    execute("ANALYZE examples_measurement")
    call_command("migrate", "examples", "0001", verbosity=0)
    expand = timed_migrate("examples", "0002")
    assert any("ON ONLY" in text for text, _ in expand)
    # No statement that blocks writers reads the table: each takes less than
    # half of one scan of it, timed right after on the same (maybe loaded)
    # machine, and never need take more than 50 ms on an idle one.
    assert max(ms for _, ms in expand) < max(50, scan_ms() / 2)
    # The guard: a trigger on the parent, in force on every partition.
    execute("UPDATE examples_measurement SET unit = NULL WHERE id IN (1, 999999)")
    assert execute("SELECT count(*) FROM examples_measurement WHERE unit IS NULL")[0][0] == 100_000
    # The pending-rows index: valid on the parent, one per partition.
    index = execute(
        "SELECT i.indisvalid, (SELECT count(*) FROM pg_inherits WHERE inhparent = i.indexrelid) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "WHERE c.relname = 'examples_measurement' AND i.indpred IS NOT NULL"
    )
    assert index == [(True, 2)]
    with pytest.raises(BackfillIncomplete, match="100,000 rows"):
        call_command("migrate", "examples", "0003", verbosity=0)
    assert set(nullable("examples_measurement", "unit").values()) == {True}

    start_worker()
    start_worker()
    job = finish(service.start("measurement_units", "test", JobOptions.build(concurrency=2)))
    assert job.status == JobStatus.SUCCEEDED
    assert job_progress(job).rows_done == 100_000
    assert checker.check(get_definition("measurement_units")).passed

    timings = timed_migrate("examples", "0003")
    assert nullable("examples_measurement", "unit") == {
        "examples_measurement": False,
        "examples_measurement_p0": False,
        "examples_measurement_p1": False,
    }
    if has_not_valid_not_null(connection):  # PostgreSQL 18: the NOT NULL itself, then validated
        assert any('"examples_measurement_unit_not_null" NOT NULL' in text for text, _ in timings)
        assert not execute(
            "SELECT conname FROM pg_constraint WHERE contype = 'n' AND NOT convalidated "
            "AND conrelid::regclass::text LIKE 'examples_measurement%'"
        )
    else:
        assert any("SET NOT NULL" in text for text, _ in timings)
    assert max(ms for _, ms in timings) < 50


def test_a_composite_key_is_refused_with_one_line_and_nothing_changes():
    execute("INSERT INTO examples_membership (team, person) VALUES (1, 1), (1, 2)")
    with pytest.raises(UnsupportedKey, match=r"composite primary key \(team, person\)"):
        service.start("membership_roles", "test")
    result = manage("backfill", "start", "membership_roles")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "composite primary key (team, person)" in result.stderr
    assert not Job.objects.exists()
    assert execute("SELECT count(*) FROM examples_membership WHERE role IS NULL")[0][0] == 2
