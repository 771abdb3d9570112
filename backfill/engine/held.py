"""Rows another transaction holds: which, held by whom, and retrying only them.

SKIP LOCKED never waits (a batch writing first gives way to it on the first
held row it meets), so a row the app holds is skipped and the slice
makes another pass for it. A row held for minutes (an idle transaction, a
long report) would make that an endless rescan. After a few passes the slice
instead keeps the keys still pending in its range (the first MAX_HELD_KEYS,
however many are held), retries only those with back-off, and records who
holds them, so the dashboard, `status --json` and
`backfill check` can name the session to look at.
"""

from typing import Any

from django.db.backends.utils import CursorWrapper

from backfill.models import Slice
from backfill.registry import Definition, Row

# Keys a slice keeps to retry at once. With more pending rows it keeps the
# first ones; once they are filled it makes one more pass for the rest, which
# fills what is free and keeps the next held ones.
MAX_HELD_KEYS = 1000
NEEDS_STATS = "needs pg_read_all_stats"

PENDING_KEYS_SQL = """
SELECT {key} FROM {table}
WHERE {in_range} AND ({pending}) AND {share}
ORDER BY {key} LIMIT %(limit)s
"""

# The held keys that can be locked now, with the columns `fill` reads.
LOCK_HELD_SQL = """
SELECT {key}{columns} FROM {table}
WHERE {key} = ANY(%(keys)s::{key_type}[]) AND ({pending})
ORDER BY {key}
FOR UPDATE SKIP LOCKED
"""

# Who holds the rows still pending: the transaction whose id is in the row's
# xmax (a row lock or an uncommitted update). A lock shared by several
# transactions (a multixact) matches no session and is shown without a pid.
# backend_xid and pid are readable by every role, a session's state, start
# and query only with pg_read_all_stats (or as its own role): backend_type is
# NULL when they are hidden.
HOLDERS_SQL = """
SELECT t.{key}, a.pid, a.state,
       round(extract(epoch FROM now() - a.xact_start)::numeric, 1)::float,
       left(a.query, 200), a.pid IS NULL OR a.backend_type IS NOT NULL
FROM {table} t
LEFT JOIN pg_stat_activity a ON a.backend_xid = t.xmax
WHERE t.{key} = ANY(%(keys)s::{key_type}[]) AND ({pending})
ORDER BY t.{key}
"""


def pending_keys(
    cursor: CursorWrapper, definition: Definition, slc: Slice, limit: int = MAX_HELD_KEYS
) -> list[str]:
    """The first `limit` keys still pending in the slice's range (text form)."""
    cursor.execute(
        definition.compose(PENDING_KEYS_SQL),
        {"after": slc.after, "high": slc.high, "limit": limit, **slc.share_parameters()},
    )
    return [str(row[0]) for row in cursor.fetchall()]


def lock_held(cursor: CursorWrapper, definition: Definition, slc: Slice) -> list[Row]:
    cursor.execute(definition.compose(LOCK_HELD_SQL), {"keys": slc.held_keys})
    return list(cursor.fetchall())


def holders(cursor: CursorWrapper, definition: Definition, keys: list[Any]) -> list[dict[str, Any]]:
    cursor.execute(definition.compose(HOLDERS_SQL), {"keys": keys})
    return [
        {
            "key": str(key),
            "pid": pid,
            "state": state,
            "age_seconds": age,
            "query": query if readable else "",
            "readable": readable,
        }
        for key, pid, state, age, query, readable in cursor.fetchall()
    ]


def describe(held: list[dict[str, Any]]) -> str:
    """One line per holder for people: who to look at in pg_stat_activity."""
    by_pid: dict[Any, list[Any]] = {}
    for row in held:
        by_pid.setdefault(row["pid"], []).append(row)
    parts = []
    for pid, rows in by_pid.items():
        first = rows[0]
        if not pid:
            who = "a transaction that shares its lock"
        elif not first.get("readable", True):
            who = f"pid {pid} (its state and query unreadable: {NEEDS_STATS})"
        else:
            who = f"pid {pid} ({first['state']} for {first['age_seconds']} s: {first['query']!r})"
        parts.append(f"{len(rows)} rows held by {who}")
    return "; ".join(parts)
