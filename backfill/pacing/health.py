"""What the database suffers from right now, read between batches for the pacing controller.

One round trip for the catalog signals, and tiny write transactions timed
end to end: a commit that must flush WAL, as every write of the app does, so
that the probe queues where the app queues (behind the backfill's WAL, on
the same disk and CPUs, under the same synchronous standbys).

The commits are timed by a `LatencyProbe`, in a process of its own, every
few tens of milliseconds *while the batches run*: timed only between this
worker's batches, a probe never sees the moments the app suffers most, when
every worker is inside a batch at once (on a small machine, all its cores
busy). What the controller reads is the slow end of those timings (their
90th percentile), against a baseline taken the same way.

Replica lag is measured from this process' own record of where the WAL was
and when: the standby's replay position is compared with it, so a standby
that stops replaying shows a lag that grows by the second (PostgreSQL's own
`replay_lag` keeps its last value while nothing is replayed).

Other roles' sessions (their transactions' start) and the standbys'
positions are hidden from a role without `pg_read_all_stats` (or
`pg_monitor`, or superuser): the reading then names those signals as
unreadable rather than let an empty answer pass for room, and the
controller goes by the others (docs/runbook.md has the grant).
"""

import os
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

from backfill.pacing.controller import REPLICA_LAG, TRANSACTION_AGE, Signals, tail
from backfill.pacing.probe import CONNINFO_ENV

# How much WAL position history a process keeps: lag beyond it reads as this long.
HISTORY_SECONDS = 600.0
WAL_RATE_WINDOW_SECONDS = 5.0
# How often a probe commits while a job's batches run; how far back a reading
# looks (one slow second on a shared machine is noise, three are pressure);
# how many timings a reading needs before its tail says more than one commit.
PROBE_SPACING_SECONDS = 0.05
PROBE_WINDOW_SECONDS = 3.0
MIN_PROBE_SAMPLES = 5
BASELINE_PROBES = 60

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
                WHERE relid IN (SELECT relid FROM pg_partition_tree(%s::regclass))),
       pg_has_role('pg_read_all_stats', 'USAGE'),
       EXISTS (SELECT 1 FROM pg_stat_replication)
"""
NEEDS_STATS = "needs pg_read_all_stats"


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


def read(table: str, latency_ms: float | None = None, history: WalHistory = _history) -> Signals:
    """The signals now (the latency baseline is the job's, added by the caller).

    `latency_ms` is a probe's reading; without one, a few commits are timed now.
    """
    latency = latency_ms if latency_ms is not None else commit_latency_ms(3)
    with connection.cursor() as cursor:
        cursor.execute(SIGNALS_SQL, [sql.Identifier(table).as_string()])
        lsn, replayed, replay_lag, transaction_age, autovacuum, reads_all, standbys = (
            cursor.fetchone()
        )
    now = time.monotonic()
    history.add(now, int(lsn))
    return Signals(
        latency_ms=latency,
        replica_lag_seconds=replica_lag(history, replayed, replay_lag, now),
        transaction_age_seconds=float(transaction_age) if transaction_age is not None else None,
        wal_mb_per_second=history.rate_mb_per_second(now),
        autovacuum=bool(autovacuum),
        unreadable=unreadable(reads_all, standbys),
    )


def unreadable(reads_all_stats: bool, standbys: bool) -> tuple[str, ...]:
    """The signals this role sees only its own share of: another role's old
    transaction, or a standby's position, would be missing from the reading."""
    if reads_all_stats:
        return ()
    return (TRANSACTION_AGE, REPLICA_LAG) if standbys else (TRANSACTION_AGE,)


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


def baseline_ms(probes: int = BASELINE_PROBES, spacing: float = PROBE_SPACING_SECONDS) -> float:
    """The tail of commits timed as a `LatencyProbe` times them, spaced out the same way.

    Taken while the job writes nothing; back to back, commits would find the
    backend awake and its pages cached, and read faster than the probe's. As
    many as a reading's window holds: the tail of twenty commits is the
    second slowest, and on a shared machine too often a lucky one.
    """
    timings = []
    for _ in range(max(MIN_PROBE_SAMPLES, probes)):
        timings.append(commit_latency_ms(1))
        time.sleep(spacing)
    return tail(timings)


class LatencyProbe:
    """Times a tiny commit every `spacing` seconds from a process of its own, until stopped.

    The commits are timed in `backfill.pacing.probe`'s process, not in this one:
    here they would wait for the interpreter lock that the batch loop holds
    between its statements. A thread of this process only reads the child's
    lines. If the child cannot connect (the database may be restarting; the
    batches will notice), there are no timings: pacing then goes by commits
    timed between batches and by the other signals.
    """

    def __init__(
        self, spacing: float = PROBE_SPACING_SECONDS, window: float = PROBE_WINDOW_SECONDS
    ) -> None:
        self.spacing = spacing
        self.window = window
        self.lock = threading.Lock()
        self.timings: deque[tuple[float, float]] = deque()  # (monotonic seconds, ms)
        self.process: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backfill.pacing.probe", str(self.spacing)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=probe_environment(),
            text=True,
        )
        self.reader = threading.Thread(target=self.read, name="backfill-latency-probe", daemon=True)
        self.reader.start()

    def read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                timing = float(line)
            except ValueError:
                continue
            with self.lock:
                self.timings.append((time.monotonic(), timing))

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reading(self) -> float | None:
        """The tail of the commits timed in the last `window` seconds; None if too few."""
        oldest = time.monotonic() - self.window
        with self.lock:
            while self.timings and self.timings[0][0] < oldest:
                self.timings.popleft()
            timings = [timing for _, timing in self.timings]
        return tail(timings) if len(timings) >= MIN_PROBE_SAMPLES else None

    def forget(self) -> None:
        """Drop the timings so far: the job has just slowed down, and they are
        what made it; read again, they would slow it down once more for the
        same pressure (as TCP halves its window once per round trip)."""
        with self.lock:
            self.timings.clear()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)


def probe_environment() -> dict[str, str]:
    """This process' environment, with the database to probe and the project importable."""
    params = connection.get_connection_params()
    keywords = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
    conninfo = make_conninfo(
        **{k: v for k, v in params.items() if k in keywords and v not in (None, "")}
    )
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, CONNINFO_ENV: conninfo, "PYTHONPATH": path}
