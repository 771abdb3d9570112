"""The rows a fill batch takes next, for the statements that lock them first.

Candidates are the next `size` pending keys of the slice in key order, read
from the snapshot, so rows held by the app are seen too. (A batch writing
first lists none: it reads only where they end, engine/expression_fill.py.)
A statement then locks the ones it can; the pending condition is checked again
under the lock, so a row filled meanwhile is left alone, and unlockable
candidates make the slice take another pass for them later. The statements
look candidates up by key from an array (one index probe each): a join would
let a planner that underestimates the pending rows (a new column has no
statistics until the next ANALYZE) walk all of them to find the few
candidates, in every batch.
"""

from dataclasses import dataclass, field

from backfill.registry import Row

CANDIDATES_SQL = """candidates AS (
    SELECT {key} AS backfill_key FROM {table}
    WHERE {in_range} AND ({pending}) AND {share}
    ORDER BY {key}
    LIMIT %(size)s
)"""


@dataclass(frozen=True)
class Batch:
    """What a batch's statement took of its candidates, and where the pass is."""

    rows: list[Row] = field(default_factory=list)
    # Candidates another transaction held, passed over for a later pass.
    skipped: int = 0
    candidates: int = 0
    last_key: str | None = None
    # Rows taken (locked, or written first) and so filled; the rows
    # themselves only when the definition's `fill` needs them.
    taken: int = 0
