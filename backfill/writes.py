"""The write log: which rows each batch filled, and the value it wrote there.

Recorded in the batch's own transaction, so it commits with the data. Revert
reads it, and only it: a row is emptied only if it still holds the value the
job wrote, so values the app wrote (a row it created through its own code
path, a value it changed since) survive, and revert's cost follows the rows
the job filled, not the width of its key range. Keys and values are kept as
text and cast back to the column types when compared, whatever those are.
"""

from typing import Any

from django.db.backends.utils import CursorWrapper
from psycopg import sql

from backfill.models import Write
from backfill.registry import Definition

# The rows of the batch that now hold a value, read back: the engine needs no
# help from the definition to know what it wrote. Driven from the keys, one
# primary-key probe each; the filter sits behind OFFSET 0 because statistics
# taken before the fill say the column is all NULL, and the planner would
# otherwise walk the column's own index over every filled row, each batch
# slower than the last.
RECORD_SQL = """
INSERT INTO {log} (job_id, slice_number, key, value)
SELECT %(job)s, %(slice)s, r.key::text, r.value::text
FROM (
    SELECT t.{key} AS key, t.{column} AS value
    FROM unnest(%(keys)s::{key_type}[]) AS k(key)
    JOIN {table} t ON t.{key} = k.key
    OFFSET 0
) AS r
WHERE r.value IS NOT NULL
"""

# The oldest writes of one slice, taken off the log as they are undone; the
# undo commits with the deletion, so a crash loses nothing and redoes nothing.
TAKE_SQL = """
DELETE FROM {log} WHERE id IN (
    SELECT id FROM {log}
    WHERE job_id = %(job)s AND slice_number = %(slice)s
    ORDER BY id LIMIT %(size)s
)
RETURNING key, value
"""


def record(
    cursor: CursorWrapper, definition: Definition, job_id: int, slice_number: int, keys: list[Any]
) -> None:
    statement = definition.compose(
        RECORD_SQL, log=sql.Identifier(Write._meta.db_table), key_type=sql.SQL(definition.key_type)
    )
    cursor.execute(statement, {"job": job_id, "slice": slice_number, "keys": keys})


def take(cursor: CursorWrapper, job_id: int, slice_number: int, size: int) -> list[tuple[str, str]]:
    statement = sql.SQL(TAKE_SQL).format(log=sql.Identifier(Write._meta.db_table))
    cursor.execute(statement.as_string(), {"job": job_id, "slice": slice_number, "size": size})
    return [(key, value) for key, value in cursor.fetchall()]
