"""What the database suffers from right now, read between batches for the pacing controller.

One round trip for the catalog signals, and a few tiny write transactions
timed end to end: a commit that must flush WAL, as every write of the app
does, so that the probe queues where the app queues (behind the backfill's
WAL, on the same disk, under the same synchronous standbys).

Replica lag is measured from this process' own record of where the WAL was
and when: the standby's replay position is compared with it, so a standby
that stops replaying shows a lag that grows by the second (PostgreSQL's own
`replay_lag` keeps its last value while nothing is replayed). Reading
`pg_stat_replication`'s positions needs superuser or the `pg_monitor` role;
without it the signal is unknown and the controller goes by the others.
"""

import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from psycopg import sql

from backfill.pacing import Signals

# How much WAL position history a process keeps: lag beyond it reads as this long.
HISTORY_SECONDS = 600.0
WAL_RATE_WINDOW_SECONDS = 5.0

SIGNALS_SQL = """
SELECT pg_current_wal_lsn() - '0/0'::pg_lsn,
       (SELECT array_agg(replay_lsn - '0/0'::pg_lsn) FROM pg_stat_replication),
       (SELECT max(extract(epoch FROM replay_lag)) FROM pg_stat_replication),
       (SELECT extract(epoch FROM max(clock_timestamp() - xact_start))
          FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND backend_type = 'client backend'
           AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)),
       EXISTS (SELECT 1 FROM pg_stat_progress_vacuum
                WHERE relid IN (SELECT relid FROM pg_partition_tree(%s::regclass)))
"""


@dataclass
class WalHistory:
    """(monotonic seconds, WAL position in bytes) as this process saw them."""

    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, now: float, lsn: int) -> None:
        self.samples.append((now, lsn))
        while self.samples and now - self.samples[0][0] > HISTORY_SECONDS:
            self.samples.popleft()

    def rate_mb_per_second(self, now: float) -> float | None:
        """WAL written per second over the last few seconds (None before two readings)."""
        recent = [(t, lsn) for t, lsn in self.samples if now - t <= WAL_RATE_WINDOW_SECONDS]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return None
        (t0, lsn0), (t1, lsn1) = recent[0], recent[-1]
        return (lsn1 - lsn0) / (t1 - t0) / 1_000_000

    def lag_seconds(self, replayed: int, now: float) -> float | None:
        """How long ago WAL the standby has not replayed yet was written (at least).

        The first reading whose position is past the replayed one: the WAL
        just before it was written by then and is still waiting.
        """
        if not self.samples:
            return None
        for t, lsn in self.samples:
            if lsn > replayed:
                return now - t
        return 0.0


_history = WalHistory()


def read(table: str, probes: int = 3, history: WalHistory = _history) -> Signals:
    """The signals now (the latency baseline is the job's, added by the caller)."""
    latency = commit_latency_ms(probes)
    with connection.cursor() as cursor:
        cursor.execute(SIGNALS_SQL, [sql.Identifier(table).as_string()])
        lsn, replayed, replay_lag, transaction_age, autovacuum = cursor.fetchone()
    now = time.monotonic()
    history.add(now, int(lsn))
    return Signals(
        latency_ms=latency,
        replica_lag_seconds=replica_lag(history, replayed, replay_lag, now),
        transaction_age_seconds=float(transaction_age) if transaction_age is not None else None,
        wal_mb_per_second=history.rate_mb_per_second(now),
        autovacuum=bool(autovacuum),
    )


def replica_lag(
    history: WalHistory, replayed: list[Any] | None, replay_lag: Any, now: float
) -> float | None:
    """The most behind standby's lag; None without a standby (or the rights to see it)."""
    positions = [int(position) for position in replayed or [] if position is not None]
    lags = [lag for lag in (history.lag_seconds(p, now) for p in positions) if lag is not None]
    if replay_lag is not None:
        lags.append(float(replay_lag))
    return max(lags) if lags else None


def commit_latency_ms(probes: int = 3) -> float:
    """The median of a few write transactions, each timed from BEGIN to its flushed COMMIT.

    `txid_current()` gives the transaction an id, so its commit writes a
    commit record and waits for it to reach disk (and synchronous standbys):
    what an app's smallest write waits for. Nothing is stored.
    """
    timings = []
    for _ in range(max(1, probes)):
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT txid_current()")
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)
