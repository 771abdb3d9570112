"""The contract racing an old app version: a row inserted without the value after the
gate counted, while the contract waits for a gap, ends in one line and no constraint;
and a refused contract removes the constraint a cut-off run left."""

import io
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django_pg_migration_tools import operations as pg_operations
from psycopg import sql

from backfill.nullability import has_not_valid_not_null
from tests.data import app_session, seed
from tests.processes import manage, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("back_to_expanded_state"),
]

TABLE = "organizations_organization"
CONTRACT = "0006_organization_admin_contract"
OLD_INSERT = (
    "INSERT INTO organizations_organization (name, search_name, created_at, updated_at) "
    "VALUES ('Old server', 'old server', now(), now()) RETURNING id"
)


def check_constraints() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
            [TABLE],
        )
        return [name for (name,) in cursor.fetchall()]


def admin_is_not_null() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attnotnull FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = 'admin_id'",
            [TABLE],
        )
        return bool(cursor.fetchone()[0])


def waiting_for_a_gap() -> bool:
    """Whether another session has been reading pg_locks for holders of the table's locks."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND datname = current_database() AND query LIKE '%%FROM pg_locks l%%')"
        )
        return bool(cursor.fetchone()[0])


def seed_and_fill(count: int) -> None:
    seed(count)
    call_command("backfill", "run", "admin_groups", "--sync", stdout=io.StringIO())


def test_a_null_insert_committed_while_the_contract_waits_ends_in_one_line_and_no_constraint():
    seed_and_fill(300)
    with app_session() as old_server, ThreadPoolExecutor(max_workers=1) as pool:
        # Not yet committed when the gate counts; it holds the table until it commits.
        inserted = old_server.execute(OLD_INSERT).fetchone()
        assert inserted is not None
        key = inserted[0]
        migrating = pool.submit(manage, "migrate", "organizations", "0006")
        wait_for(waiting_for_a_gap, timeout=90)
        time.sleep(0.5)
        old_server.commit()
        result = migrating.result()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "BackfillIncomplete: 1 row of organizations.Organization.admin was inserted without "
        f"a value while the contract waited (key {key}): an old app version is still writing"
    ), result.stderr
    assert "manage.py backfill start admin_groups" in last
    assert check_constraints() == []
    assert not admin_is_not_null()
    with app_session(autocommit=True) as old_server:
        old_server.execute(OLD_INSERT)  # old servers' inserts still work


def test_reversing_the_contract_removes_a_check_a_cut_off_run_left():
    seed_and_fill(300)
    call_command("migrate", "organizations", "0006", verbosity=0)
    name = pg_operations.NullsManager()._get_constraint_name(TABLE, "admin_id")
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (admin_id IS NOT NULL) NOT VALID")
            .format(sql.Identifier(TABLE), sql.Identifier(name))
            .as_string()
        )
    call_command("migrate", "organizations", "0005", verbosity=0)
    assert check_constraints() == []
    assert not admin_is_not_null()


def leave_a_not_valid_constraint() -> str:
    """What a migrate killed between the contract's first two statements leaves: below 18
    NullsManager's CHECK, from 18 the NOT NULL constraint itself, both NOT VALID."""
    if has_not_valid_not_null(connection):
        name, template = f"{TABLE}_admin_id_not_null", "NOT NULL admin_id NOT VALID"
    else:
        name = pg_operations.NullsManager()._get_constraint_name(TABLE, "admin_id")
        template = "CHECK (admin_id IS NOT NULL) NOT VALID"
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} " + template)
            .format(sql.Identifier(TABLE), sql.Identifier(name))
            .as_string()
        )
    return name


def test_a_refused_contract_drops_the_not_valid_constraint_a_cut_off_run_left():
    seed(30)
    name = leave_a_not_valid_constraint()
    with app_session(autocommit=True) as old_server, pytest.raises(psycopg.IntegrityError):
        old_server.execute(OLD_INSERT)  # what the leftover does to the old app
    check = manage("backfill", "check", "admin_groups")
    assert check.returncode != 0
    assert f"the constraint {name} a cut-off contract left NOT VALID" in check.stdout
    assert f'ALTER TABLE "{TABLE}" DROP CONSTRAINT "{name}";' in check.stdout
    deploy = manage("check", "--database", "default", "--tag", "backfill")
    assert f"`manage.py migrate organizations {CONTRACT}`" in deploy.stderr + deploy.stdout

    result = manage("migrate", "organizations", CONTRACT)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("BackfillIncomplete: 30 rows of organizations.Organization.admin")
    assert last.endswith(
        f"The constraint {name} an earlier cut-off run left NOT VALID was dropped; "
        "nothing else was changed."
    ), last
    assert check_constraints() == []
    assert not admin_is_not_null()
    with app_session(autocommit=True) as old_server:
        old_server.execute(OLD_INSERT)  # old servers' inserts work again
