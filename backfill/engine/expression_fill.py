"""A batch whose fill is an SQL expression over the row runs on the server alone.

Two statements can do it. The locking one takes the candidates' row locks with
SKIP LOCKED before it updates, so a row the app holds is passed over and never
waited for. Taking those locks writes every row a second time (a WAL record
each): on a cheap expression a third of the batch. So while nothing has stood
in its way, a worker runs the unlocked one instead: it updates the candidates
directly, inside a savepoint, willing to wait `UNLOCKED_LOCK_TIMEOUT_MS` for a
row someone holds. When it meets one, or a candidate changed under it, the
savepoint is rolled back and the locking statement does the batch, which then
skips and names the held rows as every batch always did. Either way the rows
written, the cursor and the write log are the same.
"""

from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from backfill.engine.candidates import CANDIDATES_SQL, CANDIDATES_WITH_ROW_SQL, Batch
from backfill.faults import Fault, classify
from backfill.models import Slice, Write
from backfill.registry import Definition
from backfill.transactions import local_settings

# Long enough for an app transaction that holds a row for a few commits'
# worth of time to let go; short enough that the rows the batch has already
# written are not kept from the app for long when it does not.
UNLOCKED_LOCK_TIMEOUT_MS = 10

# The write log takes the values from the UPDATE's RETURNING, so nothing is
# read back. Column aliases carry a prefix: the expression names the table's
# columns unqualified. The last key is ordered by the qualified column: a bare
# name in ORDER BY would be the output column, the key as text ('9' after '20').
LOG_SQL = """logged AS (
    INSERT INTO {log} (job_id, slice_number, keys, "values")
    SELECT %(job)s, %(slice)s, array_agg(backfill_key::text), array_agg(backfill_value::text)
    FROM filled
    WHERE backfill_value IS NOT NULL
    HAVING count(*) > 0
)"""
LAST_KEY_SQL = (
    "(SELECT c.backfill_key::text FROM candidates c ORDER BY c.backfill_key DESC LIMIT 1)"
)
RETURNING_SQL = "RETURNING {table}.{key} AS backfill_key, {table}.{column} AS backfill_value"

# The UPDATE finds its rows by key from an array: joined with the locked
# rows, the planner hashed them and scanned the whole table for every batch
# (a 50,000-row batch took 120 ms on 200,000 rows, 300 ms on a million).
LOCKING_FILL_SQL = f"""WITH {CANDIDATES_SQL},
locked AS (
    SELECT {{key}} AS backfill_key FROM {{table}}
    WHERE {{key}} = ANY(ARRAY(SELECT backfill_key FROM candidates)) AND ({{pending}})
    FOR UPDATE SKIP LOCKED
),
filled AS (
    UPDATE {{table}} SET {{column}} = ({{expression}})
    WHERE {{key}} = ANY(ARRAY(SELECT backfill_key FROM locked))
    {RETURNING_SQL}
),
{LOG_SQL}
SELECT (SELECT count(*) FROM candidates),
       (SELECT count(*) FROM locked),
       (SELECT count(*) FROM filled),
       {LAST_KEY_SQL}
"""

# A candidate the app changed after the statement's snapshot fails `{row}`'s
# test once the UPDATE follows it to its new version, and is not written:
# the counts then differ and the caller hands the batch to the locking
# statement. The pending test keeps a row the app filled meanwhile as it is.
UNLOCKED_FILL_SQL = f"""WITH {CANDIDATES_WITH_ROW_SQL},
filled AS (
    UPDATE {{table}} SET {{column}} = ({{expression}})
    WHERE {{row}} = ANY(ARRAY(SELECT backfill_row FROM candidates)) AND ({{pending}})
    {RETURNING_SQL}
),
{LOG_SQL}
SELECT (SELECT count(*) FROM candidates),
       (SELECT count(*) FROM filled),
       {LAST_KEY_SQL}
"""

# relkind per table, read once per process: 'r' for a plain table.
_table_kinds: dict[str, str] = {}


@dataclass(frozen=True)
class ExpressionBatch:
    batch: Batch
    filled: int
    # The unlocked statement met a held or changed row and the locking one ran.
    contended: bool


class Contended(Exception):
    """A candidate changed under the unlocked statement: its savepoint is undone."""


def fill_expression(
    cursor: CursorWrapper, definition: Definition, slc: Slice, size: int, unlocked: bool
) -> ExpressionBatch:
    """Fill, lock and log the next rows of the slice; unlocked first when asked."""
    if unlocked:
        try:
            batch, filled = fill_unlocked(cursor, definition, slc, size)
            return ExpressionBatch(batch, filled, contended=False)
        except Contended:
            pass
        except DatabaseError as exc:
            if classify(exc) != Fault.LOCK_TIMEOUT:
                raise
        batch, filled = fill_locking(cursor, definition, slc, size)
        return ExpressionBatch(batch, filled, contended=True)
    batch, filled = fill_locking(cursor, definition, slc, size)
    return ExpressionBatch(batch, filled, contended=False)


def fill_locking(
    cursor: CursorWrapper, definition: Definition, slc: Slice, size: int
) -> tuple[Batch, int]:
    cursor.execute(compose(definition, LOCKING_FILL_SQL), parameters(slc, size))
    row = cursor.fetchone()
    candidates, locked, filled, last_key = row if row else (0, 0, 0, None)
    batch = Batch(
        skipped=int(candidates) - int(locked),
        candidates=int(candidates),
        last_key=last_key,
        locked=int(locked),
    )
    return batch, int(filled)


def fill_unlocked(
    cursor: CursorWrapper, definition: Definition, slc: Slice, size: int
) -> tuple[Batch, int]:
    """Every candidate written, or the savepoint undone and an exception raised."""
    statement = compose(definition, UNLOCKED_FILL_SQL, row=row_locator(cursor, definition))
    timeout = {"lock_timeout": f"{UNLOCKED_LOCK_TIMEOUT_MS}ms"}
    with local_settings(timeout) as inner:
        inner.execute(statement, parameters(slc, size))
        row = inner.fetchone()
        candidates, filled, last_key = row if row else (0, 0, None)
        if filled != candidates:
            raise Contended
    batch = Batch(candidates=int(candidates), last_key=last_key, locked=int(filled))
    return batch, int(filled)


def row_locator(cursor: CursorWrapper, definition: Definition) -> sql.Composable:
    """How the unlocked UPDATE finds each candidate: by its ctid on a plain
    table, read straight from its page instead of probing the key index a
    second time; by key on a partitioned one, whose partitions reuse ctids."""
    kind = _table_kinds.get(definition.table)
    if kind is None:
        cursor.execute(
            "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
            [sql.Identifier(definition.table).as_string()],
        )
        row = cursor.fetchone()
        kind = _table_kinds[definition.table] = str(row[0]) if row else ""
    return sql.SQL("ctid") if kind == "r" else sql.Identifier(definition.key_column)


def compose(definition: Definition, template: str, **extra: sql.Composable) -> str:
    expression = definition.set_expression()
    assert expression is not None
    log = sql.Identifier(Write._meta.db_table)
    return definition.compose(template, expression=expression, log=log, **extra)


def parameters(slc: Slice, size: int) -> dict[str, Any]:
    return {
        "after": slc.cursor,
        "high": slc.high,
        "size": size,
        "job": slc.job_id,
        "slice": slc.number,
        **slc.share_parameters(),
    }
