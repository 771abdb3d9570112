"""A batch whose fill is an SQL expression over the row, done on the server alone.

Two statements can do it, both filling and logging the rows without reading
them into Python. The locking-first one takes the candidates' row locks with
SKIP LOCKED before it updates, so a row the app holds is passed over and never
waited for; but taking those locks writes every row a second time (a WAL
record each), a large share of a cheap expression's batch
(docs/benchmarks.md, "Cost per row"). The writing-first one updates the
candidates straight away, inside a savepoint, with a short lock timeout on
each row it has to wait for. When it meets a held row, or a candidate that
changed after its snapshot, the savepoint is rolled back and the locking-first
statement does the batch, skipping and naming held rows as every batch always
did. Either way the rows written, the cursor and the write log are the same.
Which one a batch tries first is the runner's call (`lock_first`).
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

# Each wait of the writing-first UPDATE for a row someone holds is cut off
# here (or at the batches' own lock timeout, when shorter): long enough for an
# app transaction a few commits long to let go, short enough that the rows
# the batch has already written (which the app may be queued behind) are not
# kept long when it does not.
WRITE_FIRST_LOCK_TIMEOUT_MS = 10

# The write log is built from the UPDATE's RETURNING: nothing is read back.
LOG_SQL = """logged AS (
    INSERT INTO {log} (job_id, slice_number, keys, "values")
    SELECT %(job)s, %(slice)s, array_agg(backfill_key::text), array_agg(backfill_value::text)
    FROM filled
    WHERE backfill_value IS NOT NULL
    HAVING count(*) > 0
)"""
# Aliases carry a prefix: the expression names the table's columns unqualified.
RETURNING_SQL = "RETURNING {table}.{key} AS backfill_key, {table}.{column} AS backfill_value"
# Ordered by the key, not its text: ORDER BY the text would put '9' after '20'.
LAST_KEY_SQL = (
    "(SELECT c.backfill_key::text FROM candidates c ORDER BY c.backfill_key DESC LIMIT 1)"
)


def fill_sql(rows_before: str, rows_written: str, counts: str) -> str:
    """WITH the candidates (and what else `rows_before` adds), the UPDATE of the
    rows `rows_written` picks, the write log from its RETURNING, and `counts`
    followed by the last candidate's key."""
    return f"""WITH {rows_before},
filled AS (
    UPDATE {{table}} SET {{column}} = ({{expression}})
    WHERE {rows_written}
    {RETURNING_SQL}
),
{LOG_SQL}
SELECT {counts},
       {LAST_KEY_SQL}"""


# The UPDATE finds its rows by key from an array: joined with the locked
# rows, the planner hashed them and scanned the whole table for every batch.
LOCK_FIRST_SQL = fill_sql(
    CANDIDATES_SQL
    + """,
locked AS (
    SELECT {key} AS backfill_key FROM {table}
    WHERE {key} = ANY(ARRAY(SELECT backfill_key FROM candidates)) AND ({pending})
    FOR UPDATE SKIP LOCKED
)""",
    "{key} = ANY(ARRAY(SELECT backfill_key FROM locked))",
    "(SELECT count(*) FROM candidates), (SELECT count(*) FROM locked), "
    "(SELECT count(*) FROM filled)",
)

# A candidate the app changed after the statement's snapshot is followed by
# the UPDATE to its new version. Where the server checks the `{row}` test
# again there (PostgreSQL's minor releases since September 2025), the new
# version fails it and is not written: the counts differ and the batch goes
# to LOCK_FIRST_SQL. Older minor releases write it, with the expression over
# its new columns: as right. The pending test keeps a row the app filled
# meanwhile as the app left it; a deleted candidate makes the counts differ.
WRITE_FIRST_SQL = fill_sql(
    CANDIDATES_WITH_ROW_SQL,
    "{row} = ANY(ARRAY(SELECT backfill_row FROM candidates)) AND ({pending})",
    "(SELECT count(*) FROM candidates), (SELECT count(*) FROM filled)",
)

# A table ctids are unique in: plain, with no inheritance children (an UPDATE
# of the parent reaches the children, whose ctids repeat the parent's).
CTIDS_UNIQUE_SQL = (
    "SELECT relkind = 'r' AND NOT relhassubclass FROM pg_class WHERE oid = to_regclass(%s)"
)


@dataclass(frozen=True)
class ExpressionBatch:
    """The batch's rows and counts, and whether writing first gave way."""

    batch: Batch
    filled: int
    # Writing first met a row held or changed by someone else; locking first ran.
    fell_back: bool


class CandidateChanged(Exception):
    """A candidate was changed, filled or deleted by someone else after the
    writing-first statement's snapshot: raised to roll its savepoint back."""


def fill_expression(
    cursor: CursorWrapper,
    definition: Definition,
    slc: Slice,
    size: int,
    lock_first: bool,
    lock_timeout_ms: int,
) -> ExpressionBatch:
    """Fill and log the next rows of the slice, writing first unless told not to."""
    if not lock_first:
        timeout_ms = min(WRITE_FIRST_LOCK_TIMEOUT_MS, lock_timeout_ms)
        try:
            batch, filled = fill_writing_first(cursor, definition, slc, size, timeout_ms)
            return ExpressionBatch(batch, filled, fell_back=False)
        except CandidateChanged:
            pass
        except DatabaseError as exc:
            if classify(exc) != Fault.LOCK_TIMEOUT:
                raise
    batch, filled = fill_locking_first(cursor, definition, slc, size)
    return ExpressionBatch(batch, filled, fell_back=not lock_first)


def fill_locking_first(
    cursor: CursorWrapper, definition: Definition, slc: Slice, size: int
) -> tuple[Batch, int]:
    cursor.execute(statement_for(definition, LOCK_FIRST_SQL), statement_parameters(slc, size))
    row = cursor.fetchone()
    candidates, locked, filled, last_key = row if row else (0, 0, 0, None)
    batch = Batch(
        skipped=int(candidates) - int(locked),
        candidates=int(candidates),
        last_key=last_key,
        taken=int(locked),
    )
    return batch, int(filled)


def fill_writing_first(
    cursor: CursorWrapper, definition: Definition, slc: Slice, size: int, timeout_ms: int
) -> tuple[Batch, int]:
    """Every candidate written, or the savepoint rolled back and an exception raised."""
    row_test = row_locator(cursor, definition)
    statement = statement_for(definition, WRITE_FIRST_SQL, row=row_test)
    with local_settings({"lock_timeout": f"{timeout_ms}ms"}) as inner:
        inner.execute(statement, statement_parameters(slc, size))
        row = inner.fetchone()
        candidates, filled, last_key = row if row else (0, 0, None)
        if filled != candidates:
            raise CandidateChanged
    return Batch(candidates=int(candidates), last_key=last_key, taken=int(filled)), int(filled)


def row_locator(cursor: CursorWrapper, definition: Definition) -> sql.Composable:
    """How the writing-first UPDATE finds each candidate again: by ctid where
    ctids are unique, read straight from its page instead of probing the key
    index a second time; else by key. Asked every batch (one catalog read):
    a table can gain a child or be swapped for a partitioned one meanwhile."""
    cursor.execute(CTIDS_UNIQUE_SQL, [sql.Identifier(definition.table).as_string()])
    row = cursor.fetchone()
    unique = bool(row and row[0])
    return sql.SQL("ctid") if unique else sql.Identifier(definition.key_column)


def statement_for(definition: Definition, template: str, **extra: sql.Composable) -> str:
    """The template with the definition's names, its expression and the write log quoted in."""
    expression = definition.set_expression()
    assert expression is not None
    log = sql.Identifier(Write._meta.db_table)
    return definition.compose(template, expression=expression, log=log, **extra)


def statement_parameters(slc: Slice, size: int) -> dict[str, Any]:
    return {
        "after": slc.cursor,
        "high": slc.high,
        "size": size,
        "job": slc.job_id,
        "slice": slc.number,
        **slc.share_parameters(),
    }
