"""The short transaction every batch runs in, with its limits set locally.

Fill batches and revert batches share it, so both give way to the app the same
way: a row the app holds costs at most `lock_timeout`, a runaway statement at
most `statement_timeout`. JIT is off: its compile time dwarfs a batch.
"""

import contextlib
from collections.abc import Iterator

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from backfill.conf import BatchLimits


@contextlib.contextmanager
def batch_transaction(limits: BatchLimits) -> Iterator[CursorWrapper]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, true), "
            "set_config('statement_timeout', %s, true), set_config('jit', 'off', true)",
            [f"{limits.lock_timeout_ms}ms", f"{limits.statement_timeout_ms}ms"],
        )
        yield cursor
