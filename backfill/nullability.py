"""Is a column enforced NOT NULL? One answer for the contract, the checks and the scaffold.

From PostgreSQL 18 a NOT NULL constraint can be added NOT VALID and validated
later; while it is not validated, `pg_attribute.attnotnull` is already true,
and so are information_schema's `is_nullable = 'NO'` and Django's
introspection: the rows may still hold NULLs. Only the constraint's
`pg_constraint.convalidated` (contype 'n', new in 18) says whether every row
was checked. Below 18 a NOT NULL column has no such row, and attnotnull alone
is the answer: the query below reads both, so it holds on every version.
"""

import enum

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django_pg_migration_tools import operations as pg_operations
from psycopg import sql

from backfill.registry import Definition

# The first server version with NOT NULL constraints that can be NOT VALID.
NOT_VALID_NOT_NULL_VERSION = 180000

# One row per column: attnotnull, and the name and validation of its NOT NULL
# constraint where the server keeps one (from 18; none below).
COLUMN_SQL = """
SELECT a.attnotnull, c.conname, c.convalidated
FROM pg_attribute a
LEFT JOIN pg_constraint c
  ON c.conrelid = a.attrelid AND c.contype = 'n' AND c.conkey = ARRAY[a.attnum]
WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped
"""


# A constraint a contract cut off between its steps leaves behind, still NOT VALID:
# the CHECK of django-pg-migration-tools' NullsManager (below 18), or from 18 the
# column's NOT NULL constraint itself.
LEFTOVER_SQL = """
SELECT c.conname
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attname = %s
WHERE c.conrelid = to_regclass(%s) AND NOT c.convalidated
  AND ((c.contype = 'c' AND c.conname = %s) OR (c.contype = 'n' AND c.conkey = ARRAY[a.attnum]))
"""


class Nullability(enum.Enum):
    MISSING = "missing"  # no such column (or no such table)
    NULLABLE = "nullable"
    NOT_VALID = "not null, not validated"  # declared; the rows are not checked yet
    ENFORCED = "not null"


def nullability(cursor: CursorWrapper, table: str, column: str) -> Nullability:
    cursor.execute(COLUMN_SQL, [sql.Identifier(table).as_string(), column])
    row = cursor.fetchone()
    if row is None:
        return Nullability.MISSING
    not_null, constraint, validated = row
    if not not_null:
        return Nullability.NULLABLE
    if constraint is not None and not validated:
        return Nullability.NOT_VALID
    return Nullability.ENFORCED


def is_enforced(cursor: CursorWrapper, table: str, column: str) -> bool:
    """True only when the database guarantees no row of the column is NULL."""
    return nullability(cursor, table, column) is Nullability.ENFORCED


def not_null_constraint(cursor: CursorWrapper, table: str, column: str) -> str | None:
    """The name of the column's NOT NULL constraint (from PostgreSQL 18), if any."""
    cursor.execute(COLUMN_SQL, [sql.Identifier(table).as_string(), column])
    row = cursor.fetchone()
    return None if row is None or not row[0] else row[1]


def not_valid_leftover(cursor: CursorWrapper, table: str, column: str) -> str | None:
    """The NOT VALID constraint a cut-off contract left on the column, if any.

    It refuses rows without a value (the old app's inserts, its updates of rows
    still empty, a revert) though rows may still be empty: a contract that never
    finished is not recorded, so reversing it does not remove it.
    """
    check = pg_operations.NullsManager()._get_constraint_name(table, column)
    cursor.execute(LEFTOVER_SQL, [column, sql.Identifier(table).as_string(), check])
    row = cursor.fetchone()
    return None if row is None else str(row[0])


def leftover_advice(table: str, name: str, contract: str) -> str:
    """What the leftover does and the two ways to remove it, `contract` naming the first."""
    drop = (
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}")
        .format(sql.Identifier(table), sql.Identifier(name))
        .as_string()
    )
    return (
        f"the constraint {name} a cut-off contract left NOT VALID refuses rows without a "
        f"value (the old app's inserts, updates of rows still empty, a revert): {contract} "
        f"(refused while rows are empty, it drops the constraint), or `{drop};`"
    )


def has_not_valid_not_null(connection: BaseDatabaseWrapper) -> bool:
    """Whether the server can add a NOT NULL constraint NOT VALID (from PostgreSQL 18)."""
    version: int = connection.pg_version  # type: ignore[attr-defined]
    return version >= NOT_VALID_NOT_NULL_VERSION


def none_pending(cursor: CursorWrapper, definition: Definition) -> bool:
    """True when the schema proves no row is pending, so that nothing needs counting.

    Only for a definition whose pending rows are the NULL ones (the default
    condition): one that counts other rows as pending must be asked.
    """
    if type(definition).pending_condition is not Definition.pending_condition:
        return False
    return is_enforced(cursor, definition.table, definition.target_column)
