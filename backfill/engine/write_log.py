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

# One log row per batch: the keys it filled and the values they now hold,
# read back, so the engine needs no help from the definition to know what it
# wrote (one row, not thousands with their index entries, keeps the log's cost
# small next to the fill). Driven from the keys, one primary-key probe each;
# the filter sits behind OFFSET 0 because statistics taken before the fill say
# the column is all NULL, and the planner would otherwise walk the column's
# own index over every filled row, each batch slower than the last.
RECORD_SQL = """
INSERT INTO {log} (job_id, slice_number, keys, "values")
SELECT %(job)s, %(slice)s, array_agg(r.key::text), array_agg(r.value::text)
FROM (
    SELECT t.{key} AS key, t.{column} AS value
    FROM unnest(%(keys)s::{key_type}[]) AS k(key)
    JOIN {table} t ON t.{key} = k.key
    OFFSET 0
) AS r
WHERE r.value IS NOT NULL
HAVING count(*) > 0
"""

# The oldest batch of one slice, taken off the log as it is undone; the undo
# commits with the deletion, so a crash loses nothing and redoes nothing.
TAKE_SQL = """
DELETE FROM {log} WHERE id = (
    SELECT id FROM {log}
    WHERE job_id = %(job)s AND slice_number = %(slice)s
    ORDER BY id LIMIT 1
)
RETURNING keys, "values"
"""


def record(
    cursor: CursorWrapper, definition: Definition, job_id: int, slice_number: int, keys: list[Any]
) -> None:
    statement = definition.compose(RECORD_SQL, log=sql.Identifier(Write._meta.db_table))
    cursor.execute(statement, {"job": job_id, "slice": slice_number, "keys": keys})


def take(cursor: CursorWrapper, job_id: int, slice_number: int) -> list[tuple[str, str]]:
    """The writes of the slice's oldest logged batch, or [] when none is left."""
    statement = sql.SQL(TAKE_SQL).format(log=sql.Identifier(Write._meta.db_table))
    cursor.execute(statement.as_string(), {"job": job_id, "slice": slice_number})
    row = cursor.fetchone()
    return list(zip(row[0], row[1], strict=True)) if row else []
