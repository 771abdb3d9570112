"""Who holds a table against a schema step: the sessions of this database, and what may end them.

pg_locks and pg_stat_activity list the whole cluster, and a database made
from a template has its tables under the same OIDs as the template's: a
table's OID alone would make a schema step wait for, or end, a session of
another database. Every read here is scoped to the current database, and
only its client sessions are ever ended (never a walsender, a background or
replication worker, an autovacuum, or a prepared transaction).

A role without pg_read_all_stats sees other roles' sessions with no state,
start or query (pg_locks it sees whole): such a holder is timed from when
the waiter first saw its transaction hold the lock, named as unreadable, and
never ended. A prepared transaction holds its locks with no session (no
pid): it is named by its gid, and only COMMIT PREPARED or ROLLBACK PREPARED
ends it. docs/runbook.md lists the grants the app's role needs.
"""

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from psycopg import errors

logger = logging.getLogger(__name__)

CLIENT_BACKEND = "client backend"
NEEDS_STATS = "cannot read it: the role needs pg_read_all_stats"
# How long pg_terminate_backend waits for the session to be gone.
TERMINATE_WAIT_MS = 5000


class NotEnded(RuntimeError):
    """A holder in the way that this role may not, or must not, end; `ended`
    names the sessions ended before it was refused (none, unless PostgreSQL
    refused what the up-front check allowed)."""

    def __init__(self, message: str, ended: tuple["Holder", ...] = ()) -> None:
        super().__init__(message)
        self.ended = ended


@dataclass(frozen=True)
class Holder:
    """One transaction holding a conflicting lock on the table, in this database."""

    pid: int | None  # None: a prepared transaction
    transaction: str  # pg_locks.virtualtransaction, readable by every role
    database: str
    mode: str
    role: str
    state: str
    backend_type: str  # "" when this role cannot read the session
    age_seconds: float | None  # since its transaction began; None when unreadable
    query: str
    gid: str | None = None
    superuser: bool = False  # the session's role (pg_roles.rolsuper)
    endable: bool = False  # whether this role may signal it (pg_terminate_backend's rule)
    seen_seconds: float = 0.0  # how long this waiter has seen it hold the lock

    @property
    def prepared(self) -> bool:
        return self.pid is None

    @property
    def readable(self) -> bool:
        return self.prepared or bool(self.backend_type)

    @property
    def is_autovacuum(self) -> bool:
        """An autovacuum that PostgreSQL cancels for a waiting lock (not one against wraparound)."""
        return self.backend_type == "autovacuum worker" and "wraparound" not in self.query

    @property
    def terminable(self) -> bool:
        """A client session of this database: the only kind ever ended."""
        return self.backend_type == CLIENT_BACKEND

    def in_the_way(self, attempt_ms: int) -> bool:
        """Worth waiting for rather than queueing behind: a transaction older than an
        attempt may wait, or one idle between statements (its client decides when it
        ends). A running statement younger than that is queued behind, briefly. An
        unreadable one counts from when it was first seen."""
        if self.is_autovacuum:
            return False
        age = self.age_seconds if self.age_seconds is not None else self.seen_seconds
        return age * 1000 >= attempt_ms or self.state.startswith("idle in transaction")

    def describe(self) -> str:
        where = f"role {self.role or '?'}, database {self.database}"
        if self.prepared:
            return (
                f"prepared transaction {self.gid or self.transaction!r} ({where}, prepared "
                f"{self.age_seconds} s ago, holding {self.mode}; only COMMIT PREPARED or "
                "ROLLBACK PREPARED ends it)"
            )
        if not self.readable:
            return (
                f"pid {self.pid} ({where}, seen holding {self.mode} for "
                f"{self.seen_seconds:.1f} s; its state, age and query unknown: {NEEDS_STATS})"
            )
        holding = f"holding {self.mode}: " if self.mode else ""
        return (
            f"pid {self.pid} ({self.state or self.backend_type} for {self.age_seconds} s, "
            f"{where}, {holding}{self.query!r})"
        )


# Granted locks conflicting with the statement's, on the table or its
# partitions, in this database only: one row per transaction (a prepared one
# has no pid, and is found in pg_prepared_xacts by the xid of its virtual
# transaction, "-1/<xid>"). Whether this role may end the session follows
# pg_signal_backend()'s rule: a superuser ends any; others never a superuser's
# session, and another role's only with pg_signal_backend (usesysid is
# readable without pg_read_all_stats).
HOLDERS_SQL = """
SELECT DISTINCT ON (l.virtualtransaction)
       l.pid, l.virtualtransaction, current_database(), l.mode,
       coalesce(a.usename, p.owner::text, ''), coalesce(a.state, ''), coalesce(a.backend_type, ''),
       round(extract(epoch FROM clock_timestamp()
                     - coalesce(a.xact_start, a.backend_start, p.prepared))::numeric, 1)::float,
       left(coalesce(a.query, ''), 200), p.gid, coalesce(r.rolsuper, false),
       coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                OR (NOT r.rolsuper AND (pg_has_role(r.oid, 'USAGE')
                                        OR pg_has_role('pg_signal_backend', 'USAGE'))),
                false)
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
LEFT JOIN pg_roles r ON r.oid = a.usesysid
LEFT JOIN pg_prepared_xacts p
       ON l.pid IS NULL AND p.database = current_database()
      AND p.transaction::text = split_part(l.virtualtransaction, '/', 2)
WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.locktype = 'relation' AND l.granted AND l.pid IS DISTINCT FROM pg_backend_pid()
  AND l.mode = ANY(%(modes)s)
  AND (l.relation = %(table)s::oid
       OR l.relation IN (SELECT relid FROM pg_partition_tree(%(table)s::oid::regclass)))
ORDER BY l.virtualtransaction, l.mode DESC
"""

OLDEST_SQL = """
SELECT pid, '', datname, '', coalesce(usename, ''), coalesce(state, ''),
       coalesce(backend_type, ''),
       round(extract(epoch FROM clock_timestamp() - xact_start)::numeric, 1)::float,
       left(coalesce(query, ''), 200)
FROM pg_stat_activity
WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
  AND datid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY xact_start LIMIT 3
"""

# Ends the session only if it is still a client session of this database
# holding or waiting for a conflicting lock on the table: the pid was read a
# moment ago, and may since have ended or been taken by another session.
TERMINATE_SQL = """
SELECT pg_terminate_backend(a.pid, %(wait_ms)s)
FROM pg_stat_activity a
WHERE a.pid = %(pid)s AND a.backend_type = 'client backend'
  AND a.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND EXISTS (
      SELECT 1 FROM pg_locks l
      WHERE l.pid = a.pid AND l.database = a.datid AND l.locktype = 'relation'
        AND l.mode = ANY(%(modes)s)
        AND (l.relation = %(table)s::oid
             OR l.relation IN (SELECT relid FROM pg_partition_tree(%(table)s::oid::regclass))))
"""


def read(raw: Any, table: int, modes: Sequence[str]) -> list[Holder]:
    """The transactions of this database holding a lock in `modes` on the table `table` (an OID)."""
    # Inside a transaction pg_stat_activity is read once: read it afresh each time.
    raw.execute("SELECT pg_stat_clear_snapshot()")
    raw.execute(HOLDERS_SQL, {"modes": list(modes), "table": table})
    return [Holder(*row) for row in raw.fetchall()]


def oldest(raw: Any) -> list[Holder]:
    """The oldest transactions open on this database (those this role can read)."""
    raw.execute("SELECT pg_stat_clear_snapshot()")
    raw.execute(OLDEST_SQL)
    return [Holder(*row) for row in raw.fetchall()]


@dataclass
class Sightings:
    """When the waiter first saw each transaction hold the table: how long, at
    least, one whose start this role cannot read has held it."""

    first: dict[str, float] = field(default_factory=dict)

    def timed(self, holders: list[Holder], now: float | None = None) -> list[Holder]:
        now = time.monotonic() if now is None else now
        current = {h.transaction for h in holders}
        self.first = {t: seen for t, seen in self.first.items() if t in current}
        return [
            replace(h, seen_seconds=round(now - self.first.setdefault(h.transaction, now), 1))
            for h in holders
        ]


def why_not_ended(holder: Holder) -> str | None:
    """Why this role cannot end the holder's session, or None when it can."""
    if holder.prepared:
        return "a prepared transaction has no session to end"
    if not holder.readable:
        return f"what kind of session it is is unknown ({NEEDS_STATS})"
    if not holder.terminable:
        return f"only client sessions are ended, and this is a {holder.backend_type}"
    if holder.superuser and not holder.endable:
        return "it is a superuser's session, which a role that is not a superuser never ends"
    if not holder.endable:
        return "this role may not end another role's session: it needs pg_signal_backend"
    return None


def terminate(
    raw: Any, holders: list[Holder], table: int, modes: Sequence[str], in_transaction: bool
) -> None:
    """End the holders' sessions, each only while it still holds or waits for the table.

    Raises NotEnded, ending none, when one of them is not a client session
    this role can read, or one this role may not end: all or nothing is
    decided before the first is ended. Should PostgreSQL refuse one anyway
    (the role lost a grant meanwhile), NotEnded names those already ended.
    """
    for holder in holders:
        why = why_not_ended(holder)
        if why is not None:
            raise NotEnded(f"{holder.describe()} cannot be ended: {why}")
    ended: list[Holder] = []
    for holder in holders:
        logger.warning("ending %s, as asked (--terminate-blockers)", holder.describe())
        params = {"pid": holder.pid, "wait_ms": TERMINATE_WAIT_MS, "table": table}
        if in_transaction:
            raw.execute("SAVEPOINT backfill_terminate")
        try:
            raw.execute(TERMINATE_SQL, {**params, "modes": list(modes)})
        except errors.InsufficientPrivilege as exc:
            if in_transaction:
                raw.execute("ROLLBACK TO SAVEPOINT backfill_terminate")
            raise NotEnded(
                f"{holder.describe()} cannot be ended by this role ({exc.diag.message_primary})",
                tuple(ended),
            ) from None
        if in_transaction:
            raw.execute("RELEASE SAVEPOINT backfill_terminate")
        ended.append(holder)
