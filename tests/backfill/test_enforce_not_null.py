"""The contract step: NOT NULL only on complete data, never holding a long lock."""

import io
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django_pg_migration_tools.management.commands import migrate_with_timeouts as library
from psycopg import sql

from backfill import registry
from backfill.engine import service
from backfill.nullability import has_not_valid_not_null
from backfill.schema.contract import BackfillIncomplete, EnforceNotNull, LockNotAcquired
from organizations.models import Organization
from tests.data import app_session, seed
from tests.processes import ROOT, manage, manage_at_once, worker_environment

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("back_to_expanded_state"),
]

TABLE = "organizations_organization"


def admin_is_not_null() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'admin_id'",
            [TABLE],
        )
        return cursor.fetchone()[0]


def check_constraints() -> list[tuple[str, bool]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
            [TABLE],
        )
        return cursor.fetchall()


connect = app_session


def seed_and_fill(count: int) -> None:
    seed(count)
    call_command("backfill", "run", "admin_groups", "--sync", stdout=io.StringIO())


def test_refused_while_rows_are_pending_names_the_count_and_changes_nothing():
    seed(1204)
    result = manage("migrate", "organizations", "0006")
    assert result.returncode != 0
    assert "1,204 rows of organizations.Organization.admin are still empty" in result.stderr
    assert "manage.py backfill start admin_groups" in result.stderr
    assert not admin_is_not_null()
    assert check_constraints() == []


def test_succeeds_after_the_backfill_and_reverses():
    seed_and_fill(2_000)
    call_command("migrate", "organizations", "0006", verbosity=0)
    assert admin_is_not_null()
    assert check_constraints() == []  # the temporary check is gone
    call_command("migrate", "organizations", "0005", verbosity=0)
    assert not admin_is_not_null()


def test_refused_while_a_revert_is_under_way_though_no_row_is_empty_yet(local_queue):
    seed_and_fill(500)
    reverting = service.revert("admin_groups", "test")  # queued, no batch run yet
    assert not Organization.objects.filter(admin__isnull=True).exists()
    with pytest.raises(
        BackfillIncomplete, match=f"job #{reverting.pk} of 'admin_groups' is reverting"
    ):
        call_command("migrate", "organizations", "0006", verbosity=0)
    assert not admin_is_not_null()
    assert check_constraints() == []


def test_inline_finalize_fills_a_few_remaining_rows_first(settings):
    settings.BACKFILL_FINALIZE_INLINE_ROWS = 50
    seed(30)
    call_command("migrate", "organizations", "0006", verbosity=0)
    assert admin_is_not_null()


def test_sqlmigrate_shows_the_four_statements():
    out = io.StringIO()
    call_command("sqlmigrate", "organizations", "0006", stdout=out)
    sql = out.getvalue()
    steps = (
        ['NOT NULL "admin_id" NOT VALID', "VALIDATE CONSTRAINT"]  # from PostgreSQL 18
        if has_not_valid_not_null(connection)
        else [
            'CHECK ("admin_id" IS NOT NULL) NOT VALID',
            "VALIDATE CONSTRAINT",
            "SET NOT NULL",
            "DROP CONSTRAINT",
        ]
    )
    positions = [sql.index(step) for step in steps]
    assert positions == sorted(positions)


def test_deconstruct_round_trips():
    operation = EnforceNotNull("organization", "admin", backfill="admin_groups", wait_seconds=30)
    name, args, kwargs = operation.deconstruct()
    assert name == "EnforceNotNull"
    assert EnforceNotNull(*args, **kwargs).deconstruct() == (name, args, kwargs)


class Writer:
    """An app writing to the table all along; records its longest write."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.longest = 0.0
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with connect() as conn:
            conn.autocommit = True
            while not self.stop.is_set():
                started = time.monotonic()
                conn.execute(
                    f"UPDATE {TABLE} SET updated_at = now() WHERE id = (SELECT min(id) FROM {TABLE})"
                )
                self.longest = max(self.longest, time.monotonic() - started)
                time.sleep(0.01)

    def __enter__(self) -> "Writer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_a_long_transaction_never_makes_app_writes_wait_behind_the_contract():
    seed_and_fill(2_000)
    holder = connect()
    holder.execute(f"SELECT 1 FROM {TABLE} LIMIT 1")  # ACCESS SHARE until commit
    release = threading.Timer(2.5, holder.commit)
    with Writer() as writer:
        release.start()
        started = time.monotonic()
        call_command("migrate", "organizations", "0006", verbosity=0)
        elapsed = time.monotonic() - started
    release.join()
    holder.close()
    assert admin_is_not_null()
    assert elapsed >= 2.0  # it waited for the long transaction...
    assert writer.longest < 0.3, writer.longest  # ...without making the app wait behind it


def test_gives_up_cleanly_naming_the_blocker_and_a_rerun_finishes(settings):
    settings.BACKFILL_DDL_WAIT_SECONDS = 1
    seed_and_fill(500)
    holder = connect()
    holder.execute(f"SELECT 1 FROM {TABLE} LIMIT 1")
    pid = holder.info.backend_pid
    try:
        with pytest.raises(
            LockNotAcquired, match=rf"no gap in 1 s .* pid {pid} \(idle in transaction"
        ):
            call_command("migrate", "organizations", "0006", verbosity=0)
        assert not admin_is_not_null()
    finally:
        holder.close()
    call_command("migrate", "organizations", "0006", verbosity=0)
    assert admin_is_not_null()
    assert check_constraints() == []


def test_two_contract_migrations_at_once_one_works_the_other_ends_cleanly():
    seed_and_fill(3_000)
    results = manage_at_once("migrate", "organizations", "0006")
    assert [run.returncode for run in results] == [0, 0], [run.stderr for run in results]
    assert admin_is_not_null()
    assert check_constraints() == []


FORGET_ADMIN_GROUPS_AND_MIGRATE = """
import django
django.setup()
from django_pg_migration_tools.management.commands import migrate_with_timeouts as library

from backfill import registry
from backfill.engine import service
del registry._registry["admin_groups"]  # the definition was deleted after the contract
from django.core.management import call_command
call_command("migrate", verbosity=0)
"""


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """An empty database beside the test one, dropped afterwards."""
    name = f"{connection.settings_dict['NAME']}_fresh"
    with connect() as admin:
        admin.autocommit = True
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    with connect() as admin:
        admin.autocommit = True
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_a_new_database_migrates_to_the_end_after_the_definition_is_deleted(fresh_database):
    env = worker_environment()
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + f"/{fresh_database}"
    result = subprocess.run(
        [sys.executable, "-c", FORGET_ADMIN_GROUPS_AND_MIGRATE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(env["DATABASE_URL"]) as fresh:
        applied = fresh.execute(
            "SELECT name FROM django_migrations WHERE app = 'organizations' "
            "AND name = '0006_organization_admin_contract'"
        ).fetchone()
    assert applied == ("0006_organization_admin_contract",)


def test_the_gate_reads_the_column_when_the_definition_is_gone(monkeypatch):
    seed(40)
    monkeypatch.delitem(registry._registry, "admin_groups")
    with pytest.raises(
        BackfillIncomplete, match=re.escape("40 rows of organizations.Organization.admin")
    ):
        call_command("migrate", "organizations", "0006", verbosity=0)
    assert not admin_is_not_null()


MIGRATE_WITH_TIMEOUTS = (
    "migrate_with_timeouts",
    "organizations",
    "0006",
    "--lock-timeout-in-ms",
    "2000",
    "--lock-timeout-max-retries",
    "10",
)


def test_a_second_migrate_with_timeouts_waits_for_the_first_then_finds_the_work_done():
    seed_and_fill(3_000)
    results = manage_at_once(*MIGRATE_WITH_TIMEOUTS)
    assert [run.returncode for run in results] == [0, 0], [run.stderr for run in results]
    assert "Traceback" not in "".join(run.stderr for run in results)
    assert admin_is_not_null()


def test_migrate_with_timeouts_gives_up_waiting_with_one_line():
    lock_id = library.Locking()._cast_lock_value_to_int("migrate-with-timeouts")
    with connect() as other_deploy:
        other_deploy.execute("SELECT pg_advisory_lock(%s)", [lock_id])
        run = manage(*MIGRATE_WITH_TIMEOUTS, "--wait-seconds", "1")
    code, stderr = run.returncode, run.stderr
    assert code == 1, stderr
    assert stderr.strip().splitlines()[-1].startswith("CommandError: another migrate_with_timeouts")
    assert "Traceback" not in stderr
    assert not admin_is_not_null()
