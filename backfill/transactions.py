"""Settings local to a block of work, and the short transaction every batch runs in.

`set_config(..., is_local => true)` lasts until the *transaction* ends: inside
a savepoint (a nested `atomic()`), it outlives the block and would govern
whatever the caller does next. `local_settings` restores the previous values
when its block succeeds; when the block fails, rolling back to the savepoint
undoes them already.
"""

import contextlib
from collections.abc import Iterator, Mapping

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from backfill.conf import BatchLimits

# Set locally by revert batches, and read by the write guard's trigger
# (schema/guard.py): the one writer allowed to empty a filled row.
REVERTING_SETTING = "backfill.reverting"


def apply(cursor: CursorWrapper, values: Mapping[str, str]) -> None:
    names = list(values)
    calls = ", ".join("set_config(%s, %s, true)" for _ in names)
    cursor.execute(f"SELECT {calls}", [p for name in names for p in (name, values[name])])


@contextlib.contextmanager
def local_settings(values: Mapping[str, str]) -> Iterator[CursorWrapper]:
    """A transaction (or savepoint) with these settings, which end with it.

    The outermost transaction's end resets them by itself: a batch pays no
    round trip for the restore.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        previous: dict[str, str] = {}
        if not outermost:
            names = list(values)
            cursor.execute("SELECT " + ", ".join("current_setting(%s)" for _ in names), names)
            previous = dict(zip(names, cursor.fetchone() or (), strict=True))
        apply(cursor, values)
        yield cursor
        if previous:
            apply(cursor, previous)


@contextlib.contextmanager
def batch_transaction(
    limits: BatchLimits, extra: Mapping[str, str] | None = None
) -> Iterator[CursorWrapper]:
    """A row the app holds costs a batch at most `lock_timeout`, a runaway statement
    at most `statement_timeout`. JIT is off: its compile time dwarfs a batch.

    The commit does not wait for its WAL to reach the disk
    (`synchronous_commit = off`): a crash of the server may lose the last
    batches, but each loses its data, its cursor and its write log together,
    so they are simply done again; and any later commit that does wait (the
    app's, the scheduler's) flushes the WAL in order, batches included
    (docs/engine.md).
    """
    values = {
        "lock_timeout": f"{limits.lock_timeout_ms}ms",
        "statement_timeout": f"{limits.statement_timeout_ms}ms",
        "jit": "off",
        "synchronous_commit": "off",
        **(extra or {}),
    }
    with local_settings(values) as cursor:
        yield cursor
