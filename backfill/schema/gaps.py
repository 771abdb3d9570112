"""Schema changes that wait for a gap instead of queueing.

PostgreSQL grants locks in queue order: an ALTER TABLE waiting for a long
transaction to end makes every later query on the table wait behind it, so
a lock timeout is not a cap on what the app feels, it is what the app feels.
Every DDL statement of the expand and contract steps goes through
`GapWaiter` instead. Before each attempt it reads pg_locks for sessions
holding a lock on the table (or its partitions) that conflicts with the
statement's; while one has held it longer than an attempt may wait, it waits
without queueing, naming the session in the log every few seconds. It then
attempts under a short lock timeout (BACKFILL_DDL_LOCK_TIMEOUT_MS, 100 ms),
so a transaction that slips in between costs the app at most that, and
tries again after a jittered back-off. After BACKFILL_DDL_WAIT_SECONDS it
gives up with one message naming the blocker, or, only when the operator
asked for it, ends the blockers and goes on.

Who holds the table is read in this database only, and only its client
sessions are ever ended (holders.py).

Statements whose lock lets reads and writes through (CONCURRENTLY, VALIDATE
CONSTRAINT, functions) are run as they are.
"""

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import OperationalError, connections

from backfill import conf
from backfill.schema import holders as holding
from backfill.schema.holders import Holder, Sightings
from backfill.schema.statements import CONFLICTS, WAITS_HARMLESSLY, Target, target_of

logger = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"
POLL_SECONDS = 0.05
REPORT_EVERY_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 2.0


class LockNotAcquired(RuntimeError):
    """A schema change found no gap within its budget; the message names who is in the way."""


TABLE_SQL = """
SELECT CASE WHEN %(index)s::text IS NULL THEN to_regclass(%(table)s)
            ELSE (SELECT indrelid::regclass FROM pg_index WHERE indexrelid = to_regclass(%(index)s))
       END::oid
"""


class GapWaiter:
    """A connection execute wrapper: each DDL statement waits for a gap, then attempts briefly."""

    def __init__(self, alias: str, wait_seconds: float, terminate_blockers: bool) -> None:
        self.alias = alias
        self.wait_seconds = wait_seconds
        self.terminate_blockers = terminate_blockers
        self.sightings = Sightings()

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        target = target_of(sql)
        harmless = WAITS_HARMLESSLY.search(sql) is not None
        if target is None and not harmless:
            return execute(sql, params, many, context)
        in_transaction = context["connection"].in_atomic_block

        def attempt() -> Any:
            return execute(sql, params, many, context)

        # A psycopg cursor of the same connection: its queries skip the wrappers.
        with context["connection"].connection.cursor() as raw:
            if target is None:
                return self.patiently(raw, attempt, in_transaction, sql)
            return self.run(raw, target, attempt, in_transaction, sql)

    def patiently(
        self, raw: Any, attempt: Callable[[], Any], in_transaction: bool, sql: str
    ) -> Any:
        """A statement that blocks no one while it waits: it may wait the whole budget."""
        try:
            return self.attempt(raw, attempt, int(self.wait_seconds * 1000), in_transaction)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
        oldest = "; ".join(h.describe() for h in holding.oldest(raw)) or "none this role can read"
        raise LockNotAcquired(
            f"{' '.join(sql.split())[:80]!r} waited {self.wait_seconds:.0f} s for older "
            f"transactions to end (it blocks no one meanwhile); the oldest: {oldest}. "
            "Let them end, then migrate again, which carries on where this stopped."
        )

    def run(
        self, raw: Any, target: Target, attempt: Callable[[], Any], in_transaction: bool, sql: str
    ) -> Any:
        short_ms = conf.current().ddl_lock_timeout_ms
        backoff = conf.current().ddl_backoff_seconds
        deadline = time.monotonic() + self.wait_seconds
        tries = 0
        while True:
            timeout_ms = self.wait_for_gap(raw, target, deadline, short_ms, sql, in_transaction)
            try:
                return self.attempt(raw, attempt, timeout_ms, in_transaction)
            except OperationalError as exc:
                if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
            if time.monotonic() >= deadline:
                # Young transactions in a row, each one in the way only briefly.
                _, holders = self.holders(raw, target)
                raise LockNotAcquired(gave_up(target, sql, holders, self.wait_seconds))
            tries += 1
            pause = min(MAX_BACKOFF_SECONDS, backoff * 2 ** min(tries - 1, 10))
            time.sleep(random.uniform(pause / 2, pause))

    def attempt(
        self, raw: Any, attempt: Callable[[], Any], timeout_ms: int, in_transaction: bool
    ) -> Any:
        """The statement under a lock timeout of its own; the session's is put back after."""
        raw.execute("SELECT current_setting('lock_timeout')")
        previous = raw.fetchone()[0]
        if in_transaction:
            raw.execute("SAVEPOINT backfill_ddl_attempt")
        raw.execute("SELECT set_config('lock_timeout', %s, false)", [f"{timeout_ms}ms"])
        try:
            result = attempt()
        except OperationalError:
            if in_transaction:
                raw.execute("ROLLBACK TO SAVEPOINT backfill_ddl_attempt")
            raw.execute("SELECT set_config('lock_timeout', %s, false)", [previous])
            raise
        if in_transaction:
            raw.execute("RELEASE SAVEPOINT backfill_ddl_attempt")
        raw.execute("SELECT set_config('lock_timeout', %s, false)", [previous])
        return result

    def wait_for_gap(
        self,
        raw: Any,
        target: Target,
        deadline: float,
        short_ms: int,
        sql: str,
        in_transaction: bool,
    ) -> int:
        """Return once no session holding a conflicting lock is in the way (see
        Holder.in_the_way), with the lock timeout the attempt may use; at the
        deadline, raise, or end the sessions in the way when asked to."""
        reported = 0.0
        ended: set[int | None] = set()
        while True:
            table, holders = self.holders(raw, target)
            in_the_way = [h for h in holders if h.in_the_way(short_ms)]
            if not in_the_way:
                # An autovacuum gives way once a lock request has waited deadlock_timeout.
                return (
                    short_ms + deadlock_timeout_ms(raw)
                    if any(h.is_autovacuum for h in holders)
                    else short_ms
                )
            now = time.monotonic()
            if now >= deadline:
                if not self.terminate_blockers:
                    raise LockNotAcquired(gave_up(target, sql, in_the_way, self.wait_seconds))
                self.end(raw, target, table, in_the_way, ended, in_transaction)
                continue
            if now - reported >= REPORT_EVERY_SECONDS:
                logger.warning(
                    "waiting for a gap before %s: %s",
                    " ".join(sql.split())[:80],
                    "; ".join(h.describe() for h in in_the_way),
                )
                reported = now
            time.sleep(POLL_SECONDS)

    def end(
        self,
        raw: Any,
        target: Target,
        table: int,
        in_the_way: list[Holder],
        ended: set[int | None],
        in_transaction: bool,
    ) -> None:
        """End the sessions in the way, once each; raise if one cannot be ended."""
        still = [h for h in in_the_way if h.pid in ended]
        if still:
            why = f"{still[0].describe()} was ended and still holds the table"
            raise LockNotAcquired(f"{target.table or target.index}: {why}.")
        try:
            holding.terminate(raw, in_the_way, table, CONFLICTS[target.mode], in_transaction)
        except holding.NotEnded as exc:
            done = ", ".join(f"pid {h.pid}" for h in exc.ended)
            raise LockNotAcquired(
                f"{target.table or target.index}: no gap in {self.wait_seconds:.0f} s, and "
                f"--terminate-blockers ended {f'only {done}' if done else 'nothing'}: {exc}. "
                "See docs/runbook.md."
            ) from None
        ended.update(h.pid for h in in_the_way)

    def holders(self, raw: Any, target: Target) -> tuple[int, list[Holder]]:
        """The table's OID and the transactions of this database holding it against the
        statement, each timed from when this waiter first saw it."""
        raw.execute(TABLE_SQL, {"table": target.table, "index": target.index})
        row = raw.fetchone()
        table = row[0] if row else None
        if table is None:  # not there (yet, or any more): nothing to wait for
            return 0, []
        found = holding.read(raw, table, CONFLICTS[target.mode])
        return table, self.sightings.timed(found)


def deadlock_timeout_ms(raw: Any) -> int:
    raw.execute("SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'")
    row = raw.fetchone()
    return int(row[0]) if row else 1000


def gave_up(target: Target, sql: str, holders: list[Holder], waited: float) -> str:
    what = target.table or target.index
    blockers = "; ".join(h.describe() for h in holders)
    pids = ", ".join(str(h.pid) for h in holders if not h.prepared)
    end_it = f", or end it (SELECT pg_terminate_backend(pid) for pid {pids})" if pids else ""
    return (
        f"{what}: no gap in {waited:.0f} s to run {' '.join(sql.split())[:80]!r}; in the way: "
        f"{blockers}. Let it end{end_it}, or run migrate_with_timeouts with "
        "--terminate-blockers; then migrate again, which carries on where this stopped."
    )


@contextmanager
def waiting(
    alias: str, wait_seconds: float | None = None, terminate_blockers: bool | None = None
) -> Iterator[None]:
    """Run the DDL sent on `alias` inside this block through a GapWaiter (once, if nested)."""
    connection = connections[alias]
    if not conf.current().ddl_wait_for_gaps or any(
        isinstance(w, GapWaiter) for w in connection.execute_wrappers
    ):
        yield
        return
    waiter = GapWaiter(
        alias,
        wait_seconds if wait_seconds is not None else conf.current().ddl_wait_seconds,
        terminate_blockers
        if terminate_blockers is not None
        else conf.current().ddl_terminate_blockers,
    )
    with connection.execute_wrapper(waiter):
        yield
