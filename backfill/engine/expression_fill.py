"""A batch whose fill is an SQL expression over the row, done on the server alone.

Two statements can do it, both filling and logging the rows without reading
them into Python. The locking-first one takes the candidates' row locks with
SKIP LOCKED before it updates, so a row the app holds is passed over and never
waited for; but taking those locks writes every row a second time (a WAL
record each), and the candidates are listed, kept and looked up again: most
of a cheap expression's batch beyond what one UPDATE costs
(docs/benchmarks.md, "Cost per row"). The writing-first one updates every
pending row of the next key range straight away, as a one-pass UPDATE does,
inside a savepoint, with a short lock timeout on each row it has to wait for.
When it meets a held row the savepoint is rolled back and the locking-first
statement does the batch, skipping and naming held rows as every batch always
did. Either way the rows written, the cursor and the write log agree. Which
one a batch tries first is the runner's call (`lock_first`).
"""

from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from backfill.engine.candidates import CANDIDATES_SQL, Batch
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
# See RANGE_END_SQL. The UPDATE after it runs with it too: it sorts nothing
# itself, and an expression that does still runs (the setting only weighs plans).
WRITE_FIRST_SETTINGS = {"enable_sort": "off"}

# The write log is built from the UPDATE's RETURNING: nothing is read back.
# A row the expression gives NULL is written but not filled: it is neither
# logged nor counted (progress counts filled rows), and stays pending.
LOG_SQL = """logged AS (
    INSERT INTO {log} (job_id, slice_number, keys, "values")
    SELECT %(job)s, %(slice)s, array_agg(backfill_key::text), array_agg(backfill_value::text)
    FROM filled
    WHERE backfill_value IS NOT NULL
    HAVING count(*) > 0
)"""
# Aliases carry a prefix: the expression names the table's columns unqualified.
RETURNING_SQL = "RETURNING {table}.{key} AS backfill_key, {table}.{column} AS backfill_value"
# The UPDATE finds its rows by key from an array: joined with the locked
# rows, the planner hashed them and scanned the whole table for every batch.
# The last key is ordered by the key, not its text ('9' would follow '20').
LOCK_FIRST_SQL = f"""WITH {CANDIDATES_SQL},
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
SELECT (SELECT count(*) FROM candidates), (SELECT count(*) FROM locked),
       (SELECT count(backfill_value) FROM filled),
       (SELECT c.backfill_key::text FROM candidates c ORDER BY c.backfill_key DESC LIMIT 1)"""

# Where a writing-first batch ends: the slice's `size`th pending key after
# its cursor, walked in key order as the candidates are. None when fewer are
# left: the batch then runs to the slice's end. The alias keeps ORDER BY on
# the key itself: a bare name would pick the output column, the key's text.
# Run with sorting off: a new column without statistics looks almost never
# pending, and the planner would read and sort every row of the slice to find
# the `size`th instead of walking the key index (tests/backfill/test_batch_statement.py).
RANGE_END_SQL = """SELECT {key}::text AS range_end FROM {table}
WHERE {in_range} AND ({pending}) AND {share}
ORDER BY {key}
OFFSET %(size)s - 1 LIMIT 1"""

# Every pending row of the key range, found by the key index as a one-pass
# UPDATE finds its rows: no candidate list is built, kept or looked up again.
# A row the app changes and commits while the UPDATE waits on it is followed
# to its new version and tested again (range, share, pending): filled from
# its new columns, or left as the app filled it.
WRITE_FIRST_SQL = f"""WITH filled AS (
    UPDATE {{table}} SET {{column}} = ({{expression}})
    WHERE {{in_range}} AND ({{pending}}) AND {{share}}
    {RETURNING_SQL}
),
{LOG_SQL}
SELECT count(backfill_value) FROM filled"""


@dataclass(frozen=True)
class ExpressionBatch:
    """The batch's rows and counts, and whether writing first gave way."""

    batch: Batch
    filled: int
    # Writing first met a row held by someone else; locking first ran.
    fell_back: bool


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
    """The slice's next `size` pending rows written (with any row of their key
    range that became pending meanwhile); or the savepoint rolled back and the
    lock timeout raised. Both statements are in the savepoint: the first can
    be the batch's first wait on the table (behind a queued schema change)."""
    parameters = statement_parameters(slc, size)
    with local_settings(WRITE_FIRST_SETTINGS | {"lock_timeout": f"{timeout_ms}ms"}) as inner:
        inner.execute(definition.compose(RANGE_END_SQL), parameters)
        row = inner.fetchone()
        end = row[0] if row else None
        if end is not None:
            parameters["high"] = end
        inner.execute(statement_for(definition, WRITE_FIRST_SQL), parameters)
        row = inner.fetchone()
        filled = int(row[0]) if row else 0
    # Without an end the range ran to the slice's end: no last key, so the
    # cursor's advance ends the pass.
    found = size if end is not None else filled
    return Batch(candidates=found, last_key=end, taken=filled), filled


def statement_for(definition: Definition, template: str) -> str:
    """The template with the definition's names, its expression and the write log quoted in."""
    expression = definition.set_expression()
    assert expression is not None
    log = sql.Identifier(Write._meta.db_table)
    return definition.compose(template, expression=expression, log=log)


def statement_parameters(slc: Slice, size: int) -> dict[str, Any]:
    return {
        "after": slc.cursor,
        "high": slc.high,
        "size": size,
        "job": slc.job_id,
        "slice": slc.number,
        **slc.share_parameters(),
    }
