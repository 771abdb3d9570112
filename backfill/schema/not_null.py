"""The contract's NOT NULL statements, by server version.

Below PostgreSQL 18 the column gets NOT NULL through a CHECK constraint
(django-pg-migration-tools' `NullsManager`): ADD CHECK NOT VALID, VALIDATE,
SET NOT NULL (no scan, thanks to the valid check), DROP the check: three
statements under ACCESS EXCLUSIVE. From 18 the NOT NULL constraint itself
can be added NOT VALID and validated: ADD CONSTRAINT ... NOT NULL ... NOT
VALID (ACCESS EXCLUSIVE, no scan), VALIDATE CONSTRAINT (the scan, under
SHARE UPDATE EXCLUSIVE): one exclusive lock instead of three. Either way each
step reads the catalog first, so a run that gave up part-way is finished by
the next, and a CHECK-path contract begun before an upgrade to 18 is
finished the way it began.
"""

from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.backends.utils import truncate_name
from django.db.models import Model
from django_pg_migration_tools import operations as pg_operations
from psycopg import sql

from backfill.nullability import (
    Nullability,
    has_not_valid_not_null,
    not_null_constraint,
    nullability,
)

ADD_NOT_VALID = "ALTER TABLE {table} ADD CONSTRAINT {name} NOT NULL {column} NOT VALID"
VALIDATE = "ALTER TABLE {table} VALIDATE CONSTRAINT {name}"
DROP = "ALTER TABLE {table} DROP CONSTRAINT {name}"

CHECK_CONSTRAINT_EXISTS = (
    "SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s "
    "AND contype = 'c'"
)


def set_not_null(
    app_label: str, schema_editor: BaseDatabaseSchemaEditor, model: type[Model], column: str
) -> None:
    """Make `column` NOT NULL, validated, with the fewest exclusive locks the server allows."""
    table = model._meta.db_table
    manager = pg_operations.NullsManager()
    if not has_not_valid_not_null(schema_editor.connection) or check_path_begun(
        schema_editor, manager, table, column
    ):
        manager.set_not_null(app_label, schema_editor, model, column)
        return
    if schema_editor.collect_sql:
        for template in (ADD_NOT_VALID, VALIDATE):
            schema_editor.execute(statement(template, table, column, default_name(table, column)))
        return
    with schema_editor.connection.cursor() as cursor:
        state = nullability(cursor, table, column)
        name = not_null_constraint(cursor, table, column)
    if state is Nullability.ENFORCED:
        return
    if name is None:
        name = default_name(table, column)
        schema_editor.execute(statement(ADD_NOT_VALID, table, column, name))
    schema_editor.execute(statement(VALIDATE, table, column, name))


def undo(schema_editor: BaseDatabaseSchemaEditor, model: type[Model], column: str) -> None:
    """Drop what a contract whose validation failed added: the CHECK path's check, or on
    18 the NOT NULL constraint left NOT VALID (either refuses new rows without a value)."""
    drop_check(schema_editor, model, column)
    table = model._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        state = nullability(cursor, table, column)
        name = not_null_constraint(cursor, table, column)
    if state is Nullability.NOT_VALID and name is not None:
        schema_editor.execute(statement(DROP, table, column, name))


def drop_check(schema_editor: BaseDatabaseSchemaEditor, model: type[Model], column: str) -> None:
    """Drop the temporary NOT NULL check of `NullsManager` if a run left it."""
    manager = pg_operations.NullsManager()
    table = model._meta.db_table
    name = manager._get_constraint_name(table, column)
    if manager._constraint_exists(schema_editor, name):
        manager._alter_table_drop_constraint(schema_editor, table, name)


def check_path_begun(
    schema_editor: BaseDatabaseSchemaEditor,
    manager: pg_operations.NullsManager,
    table: str,
    column: str,
) -> bool:
    """Whether an earlier run left the CHECK path's constraint (for instance before an upgrade)."""
    if schema_editor.collect_sql:
        return False
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            CHECK_CONSTRAINT_EXISTS,
            [sql.Identifier(table).as_string(), manager._get_constraint_name(table, column)],
        )
        return cursor.fetchone() is not None


def default_name(table: str, column: str) -> str:
    """PostgreSQL's own name for a column's NOT NULL constraint, kept under 63 bytes."""
    return truncate_name(f"{table}_{column}_not_null", 63)


def statement(template: str, table: str, column: str, name: str) -> str:
    return (
        sql.SQL(template)
        .format(
            table=sql.Identifier(table), column=sql.Identifier(column), name=sql.Identifier(name)
        )
        .as_string()
    )
