"""A stand-in for the live app: writes at a fixed rate, each one timed.

    DATABASE_URL=... python -m benchmarks.app_load --rate 200 --out ops.json

Runs in a process of its own. By default (`--kind orm`) through Django's ORM
exactly as the app would: single-row updates of random organizations and, for
a share of the writes, `Organization.objects.create()`, which claims an admin
group by the naming rule in the same transaction. As in the seeded table, one
created name in ten is a common one ("Shared Org 7"), so it competes with the
rows a backfill is naming. With `--kind plain`, a client that is not Django:
plain SQL from one psycopg connection, short transactions updating random
organizations, a share of them reading the row FOR UPDATE first (a lock held
across a round trip). A process of its own samples `pg_stat_activity` for
the longest time any of the writes waited for a lock.

It writes until SIGTERM or SIGINT, then dumps every write (wall-clock start,
latency, kind) and the lock waits as JSON for the benchmark to summarise.
"""

import argparse
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType

import psycopg

from benchmarks.databases import ROOT, env_for

APPLICATION_NAME = "benchmark-app-load"
SHARED_POOL = 1000  # as in seed_organizations
SHARED_NAME_SHARE = 0.1  # as seed_organizations' default --duplicate-share
LOCK_SAMPLE_SECONDS = 0.005
MAX_BACKLOG_SECONDS = 1.0


@dataclass(frozen=True)
class Write:
    at: float  # time.time() when it was sent
    seconds: float
    kind: str


class LockWaitMonitor(multiprocessing.Process):
    """Samples how long each of the load's statements has been waiting for a lock.

    A process of its own, not a thread of the load: a thread would share the
    interpreter lock with the writes it watches, and on a busy machine every
    write would also wait for the sampler's Python to let go of it, which
    the writes' latencies would count as the database's.
    """

    QUERY = (
        "SELECT a.pid, a.query_start, extract(epoch FROM clock_timestamp() - a.query_start), "
        "a.wait_event || ': ' || left(a.query, 60) || ' <- ' || coalesce(left(b.query, 60), '?') "
        "FROM pg_stat_activity a LEFT JOIN pg_stat_activity b "
        "ON b.pid = (pg_blocking_pids(a.pid))[1] "
        "WHERE a.application_name = %s AND a.wait_event_type = 'Lock'"
    )

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.stopping = multiprocessing.Event()
        self.results, self.sender = multiprocessing.Pipe(duplex=False)

    def run(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):  # the load stops it when it stops
            signal.signal(signum, signal.SIG_IGN)
        waits: dict[tuple[int, str], float] = {}
        waiting_for: dict[tuple[int, str], str] = {}
        with psycopg.connect(self.conninfo, autocommit=True, application_name="monitor") as conn:
            while not self.stopping.is_set():
                for pid, started, seconds, what in conn.execute(self.QUERY, [APPLICATION_NAME]):
                    key = (pid, str(started))
                    waits[key] = max(waits.get(key, 0.0), float(seconds))
                    waiting_for.setdefault(key, what)
                time.sleep(LOCK_SAMPLE_SECONDS)
        self.sender.send([(key[1], seconds, waiting_for[key]) for key, seconds in waits.items()])

    def start(self) -> None:
        super().start()
        self.sender.close()  # the child's copy stays open: recv ends if the child dies

    def stop(self) -> list[tuple[str, float, str]]:
        """(statement start, seconds waited, what it waited for), per statement that waited."""
        self.stopping.set()
        longest: list[tuple[str, float, str]] = self.results.recv()
        self.join()
        return longest


class Writer:
    """The app's writes, through the ORM."""

    def __init__(self, insert_share: float, seed: int) -> None:
        from django.db.models import Max, Min

        from organizations.models import Organization

        self.model = Organization
        self.random = random.Random(seed)
        self.insert_share = insert_share
        bounds = Organization.objects.aggregate(low=Min("pk"), high=Max("pk"))
        self.low, self.high = bounds["low"] or 1, bounds["high"] or 1
        self.created = 0

    def write(self) -> str:
        from django.utils import timezone

        if self.random.random() < self.insert_share:
            self.model.objects.create(name=self.new_name())
            return "insert"
        pk = self.random.randint(self.low, self.high)
        self.model.objects.filter(pk=pk).update(updated_at=timezone.now())
        return "update"

    def new_name(self) -> str:
        self.created += 1
        if self.random.random() < SHARED_NAME_SHARE:
            return f"Shared Org {self.random.randrange(SHARED_POOL)}"
        return f"Signed up during the backfill {os.getpid()}-{self.created}"


class PlainWriter:
    """The app's writes as plain SQL: what any client of the database sends."""

    TOUCH = "UPDATE organizations_organization SET updated_at = now() WHERE id = %s"
    READ_FOR_UPDATE = "SELECT name FROM organizations_organization WHERE id = %s FOR UPDATE"

    def __init__(self, conninfo: str, locked_share: float, seed: int) -> None:
        self.conn = psycopg.connect(conninfo, autocommit=True, application_name=APPLICATION_NAME)
        bounds = self.conn.execute("SELECT min(id), max(id) FROM organizations_organization")
        low, high = bounds.fetchone() or (1, 1)
        self.low, self.high = low or 1, high or 1
        self.random = random.Random(seed)
        self.locked_share = locked_share

    def write(self) -> str:
        pk = self.random.randint(self.low, self.high)
        locked = self.random.random() < self.locked_share
        with self.conn.transaction():
            if locked:
                self.conn.execute(self.READ_FOR_UPDATE, [pk])
            self.conn.execute(self.TOUCH, [pk])
        return "locked update" if locked else "update"


def run(writer: Writer | PlainWriter, rate: float) -> list[Write]:
    """Write `rate` times a second until told to stop.

    Open loop, like `pgbench --rate`: a write that runs late does not delay
    the schedule, the next ones go out at once to catch up, so the rate shows
    what the database could absorb. Only slots more than a second behind are
    dropped, so that a write blocked for a minute is not followed by a burst
    of 12,000.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    writes: list[Write] = []
    interval = 1.0 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        at, started = time.time(), time.monotonic()
        kind = writer.write()
        writes.append(Write(at, time.monotonic() - started, kind))
        next_at = max(next_at + interval, time.monotonic() - MAX_BACKLOG_SECONDS)
        stop.wait(max(0.0, next_at - time.monotonic()))
    return writes


@dataclass(frozen=True)
class LoadReport:
    """What the app saw in a time window."""

    writes: int
    seconds: float
    writes_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    longest_lock_wait_ms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def summarize(
    writes: Sequence[Write], lock_waits: Sequence[tuple[float, float]], start: float, end: float
) -> LoadReport:
    """The writes sent between `start` and `end` (wall clock), and the lock waits in between."""
    window = [w.seconds for w in writes if start <= w.at < end]
    ordered = sorted(window) or [0.0]
    seconds = end - start
    waits = [waited for at, waited in lock_waits if start <= at < end]
    return LoadReport(
        writes=len(window),
        seconds=round(seconds, 2),
        writes_per_second=round(len(window) / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(statistics.median(ordered) * 1000, 2),
        p99_ms=round(percentile(ordered, 0.99) * 1000, 2),
        max_ms=round(ordered[-1] * 1000, 2),
        longest_lock_wait_ms=round(max(waits, default=0.0) * 1000, 1),
    )


def p99_timeline(writes: Sequence[Write], start: float, end: float) -> list[tuple[float, float]]:
    """(second since `start`, p99 latency in ms of the writes sent during that second).

    A write blocked behind a lock also stops the load from sending, so its
    second would hold one slow write among many fast ones and the p99 would
    hide it. Each second therefore counts, too, the age so far of any write
    still waiting when the second ends: a 50 s wait shows as a rising line.
    """
    buckets: dict[int, list[float]] = {}
    for w in writes:
        if start <= w.at < end:
            buckets.setdefault(int(w.at - start), []).append(w.seconds)
    waiting = waiting_ages(writes, start, end)
    seconds = sorted(set(buckets) | set(waiting))
    return [
        (
            second + 0.5,
            round(
                max(percentile(sorted(buckets.get(second, [0.0])), 0.99), waiting.get(second, 0.0))
                * 1000,
                2,
            ),
        )
        for second in seconds
    ]


def waiting_ages(writes: Sequence[Write], start: float, end: float) -> dict[int, float]:
    """Second since `start` -> how long the oldest write still waiting at its end had waited."""
    ages: dict[int, float] = {}
    for w in writes:
        done = w.at + w.seconds
        if w.seconds < 1.0 or done < start or w.at >= end:
            continue
        for second in range(max(int(w.at - start), 0), int(min(done, end) - start)):
            age = start + second + 1 - w.at
            ages[second] = max(ages.get(second, 0.0), age)
    return ages


def load_result(path: Path) -> tuple[list[Write], list[tuple[float, float]]]:
    data = json.loads(path.read_text())
    writes = [Write(*w) for w in data["writes"]]
    return writes, [(float(at), float(waited)) for at, waited, _ in data["lock_waits"]]


class AppLoad:
    """Context manager: the load runs in a child process against `db` for the block."""

    def __init__(
        self, db: str, out: Path, rate: float = 200.0, insert_share: float = 0.2, kind: str = "orm"
    ) -> None:
        self.out = out
        self.command = [
            sys.executable,
            "-m",
            "benchmarks.app_load",
            f"--rate={rate}",
            f"--insert-share={insert_share}",
            f"--kind={kind}",
            f"--out={out}",
        ]
        self.cwd, self.env = ROOT, env_for(db)
        self.writes: list[Write] = []
        self.lock_waits: list[tuple[float, float]] = []

    def __enter__(self) -> "AppLoad":
        self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env)
        time.sleep(3)  # Django set up and first writes sent
        if self.process.poll() is not None:
            raise RuntimeError(f"the app load exited early ({self.process.returncode})")
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        if self.process.wait(timeout=120) != 0:
            raise RuntimeError(f"the app load failed ({self.process.returncode})")
        self.writes, self.lock_waits = load_result(self.out)

    def report(self, start: float, end: float) -> LoadReport:
        return summarize(self.writes, self.lock_waits, start, end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="writes per second")
    parser.add_argument(
        "--insert-share",
        type=float,
        default=0.2,
        help="share of inserts (orm), of updates that lock the row first (plain)",
    )
    parser.add_argument("--kind", choices=["orm", "plain"], default="orm")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ["PGAPPNAME"] = APPLICATION_NAME
    import django
    from django.db import connection

    monitor = LockWaitMonitor(os.environ["DATABASE_URL"])
    monitor.start()
    writer: Writer | PlainWriter
    if options.kind == "plain":
        writer = PlainWriter(os.environ["DATABASE_URL"], options.insert_share, options.seed)
    else:
        django.setup()
        writer = Writer(options.insert_share, options.seed)
    writes = run(writer, options.rate)
    longest = monitor.stop()
    if options.kind == "orm":
        connection.close()
    waits = [(datetime.fromisoformat(at).timestamp(), s, w) for at, s, w in longest]
    options.out.write_text(
        json.dumps({"writes": [list(asdict(w).values()) for w in writes], "lock_waits": waits})
    )


if __name__ == "__main__":
    main()
