"""The expand step adds the admin link without statements that block writes."""

import io

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db


def sqlmigrate(migration: str) -> str:
    out = io.StringIO()
    call_command("sqlmigrate", "organizations", migration, stdout=out)
    return out.getvalue()


# sqlmigrate of a non-atomic migration refuses to run inside the test's transaction.
@pytest.mark.django_db(transaction=True)
def test_expand_sql_adds_a_bare_nullable_column_and_builds_the_index_concurrently():
    statements = sqlmigrate("0003")
    assert 'ADD COLUMN IF NOT EXISTS "admin_id"\ninteger NULL;' in statements
    assert "DEFAULT" not in statements
    assert (
        'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "organization_admin_id_uniq"' in statements
    )
    assert "UNIQUE USING INDEX" in statements


@pytest.mark.django_db(transaction=True)
def test_expand_sql_adds_the_foreign_key_not_valid_then_validates_it_separately():
    statements = sqlmigrate("0003")
    add_fk = statements.index("FOREIGN KEY")
    validate = statements.index("VALIDATE CONSTRAINT")
    assert "NOT VALID" in statements[add_fk:validate]
    assert add_fk < validate
    assert "BEGIN;" not in statements  # non-atomic: CONCURRENTLY needs it


def test_after_expand_the_column_is_nullable_unique_and_its_foreign_key_valid():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'organizations_organization' AND column_name = 'admin_id'"
        )
        assert cursor.fetchone() == ("YES",)
        cursor.execute(
            "SELECT contype, convalidated FROM pg_constraint "
            "WHERE conrelid = 'organizations_organization'::regclass AND contype IN ('u', 'f')"
        )
        assert sorted(cursor.fetchall()) == [("f", True), ("u", True)]


def test_the_models_match_the_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
