"""NOT NULL by server version: one exclusive lock on 18, and "not validated" never read as done."""

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from backfill.nullability import Nullability, has_not_valid_not_null, nullability
from backfill.schema.contract import BackfillIncomplete
from backfill.schema.scaffold import Request, ScaffoldRefused, scaffold
from tests.data import seed
from tests.processes import manage

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("back_to_expanded_state"),
]

TABLE = "organizations_organization"
NOT_VALID = "organizations_organization_admin_id_not_null"


@pytest.fixture
def postgres18() -> None:
    if not has_not_valid_not_null(connection):
        pytest.skip("NOT NULL ... NOT VALID needs PostgreSQL 18")


@pytest.fixture
def declare_not_valid(postgres18: None) -> Iterator[Callable[[], None]]:
    """Declares the column NOT NULL without validating it, as a contract that stopped
    after its first statement leaves it; the constraint is dropped after the test."""

    def declare() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"ALTER TABLE {TABLE} ADD CONSTRAINT {NOT_VALID} NOT NULL admin_id NOT VALID"
            )

    yield declare
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS {NOT_VALID}")


def not_null_constraints() -> list[tuple[str, bool]]:
    """The column's NOT NULL constraints (PostgreSQL 18 keeps them in pg_constraint)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.conname, c.convalidated FROM pg_constraint c JOIN pg_attribute a "
            "ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
            "WHERE c.conrelid = %s::regclass AND c.contype = 'n' AND a.attname = 'admin_id'",
            [TABLE],
        )
        return cursor.fetchall()


def attnotnull() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attname = 'admin_id'",
            [TABLE],
        )
        return cursor.fetchone()[0]


def contract_statements() -> list[str]:
    """The ALTER TABLE statements the contract migration sends."""
    sent: list[str] = []

    def record(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith("ALTER TABLE"):
            sent.append(" ".join(sql.split()))
        return execute(sql, *args)

    with connection.execute_wrapper(record):
        call_command("migrate", "organizations", "0006", verbosity=0)
    return sent


def test_on_18_the_contract_holds_one_exclusive_lock_and_leaves_a_validated_not_null(postgres18):
    seed(500)
    call_command("backfill", "run", "admin_groups", "--sync", stdout=io.StringIO())
    sent = contract_statements()
    assert [s.split(" ", 3)[3].split(" ")[0:2] for s in sent] == [
        ["ADD", "CONSTRAINT"],
        ["VALIDATE", "CONSTRAINT"],
    ], sent
    assert 'NOT NULL "admin_id" NOT VALID' in sent[0]
    assert not any("CHECK" in s or "SET NOT NULL" in s for s in sent)
    assert not_null_constraints() == [(NOT_VALID, True)]
    call_command("migrate", "organizations", "0005", verbosity=0)
    assert not attnotnull()
    assert not_null_constraints() == []


def test_below_18_the_contract_goes_through_a_check_constraint():
    if has_not_valid_not_null(connection):
        pytest.skip("the CHECK path is for servers before 18")
    seed(100)
    call_command("backfill", "run", "admin_groups", "--sync", stdout=io.StringIO())
    sent = contract_statements()
    assert any('CHECK ("admin_id" IS NOT NULL) NOT VALID' in s for s in sent)
    assert any("SET NOT NULL" in s for s in sent)
    assert attnotnull()


def test_a_not_null_left_not_valid_is_read_as_pending_dropped_by_a_refused_migrate_then_validated(
    declare_not_valid,
):
    seed(300)
    declare_not_valid()
    assert attnotnull()  # what information_schema and Django's introspection also say
    with connection.cursor() as cursor:
        assert nullability(cursor, TABLE, "admin_id") is Nullability.NOT_VALID
    checked = manage("backfill", "check", "admin_groups")
    assert checked.returncode != 0
    assert "300 rows of organizations.Organization.admin are still empty" in checked.stdout
    deploy = manage("check", "--deploy")
    assert (
        "organizations.0006_organization_admin_contract will be refused: 300 rows" in deploy.stderr
    )
    with pytest.raises(BackfillIncomplete, match="300 rows"):
        call_command("migrate", "organizations", "0006", verbosity=0)
    assert not_null_constraints() == []  # it refused the old app's inserts
    call_command("backfill", "run", "admin_groups", "--sync", stdout=io.StringIO())
    declare_not_valid()  # a run cut off once the rows were filled
    call_command("migrate", "organizations", "0006", verbosity=0)
    assert not_null_constraints() == [(NOT_VALID, True)]


def test_makebackfill_names_a_not_valid_column_as_a_contract_under_way(declare_not_valid):
    declare_not_valid()
    with pytest.raises(
        ScaffoldRefused,
        match=r"\(NOT NULL NOT VALID: a contract is under way, `migrate` finishes it once "
        r"`manage.py backfill check` passes\)",
    ):
        scaffold(Request("organizations.Organization", "admin", name="admin_again"))
