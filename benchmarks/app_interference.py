"""What slows an app's writes on this machine: busy cores, or WAL being written.

    .venv/bin/python -m benchmarks.app_interference --seconds 20

Runs an app load (`--kind plain` by default: plain SQL, app_load.py) on a
copy of a seeded table and, window after window, puts beside it one thing
that touches none of the app's rows, timing the app's writes in each window:

- one core busy outside PostgreSQL (`yes > /dev/null`);
- one, then two, backends busy computing (a streamed `generate_series`:
  no lock, no WAL, no temporary file);
- one backend inserting rows into a table of its own as fast as it can,
  committing every 10,000 rows, with `synchronous_commit` off (as a batch
  commits) and then on;
- the same at about half the rate (a 30 ms sleep after each commit).

An "alone" window comes before each, so the machine's drift shows. Each
line gives the app's p99 and writes per second in the window, and the WAL
the whole server wrote per second (run nothing else beside it). Needs `psql`
and `yes` on the PATH.
"""

import argparse
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from backfill.management.arguments import positive_int
from benchmarks.app_load import AppLoad
from benchmarks.databases import ROOT, copy_of, drop, url
from benchmarks.templates import seed

OUT = ROOT / "benchmarks" / "logs" / "interference"
COMPUTE = "SELECT count(x) FROM (SELECT generate_series(1, 100000000000) AS x) AS s"
INSERTS = (
    "DO $$ BEGIN LOOP "
    "INSERT INTO interference SELECT g, repeat('x', 50) FROM generate_series(1, 10000) AS g; "
    "COMMIT; PERFORM pg_sleep(%s); END LOOP; END $$"
)
# Ends this benchmark's own sessions, in its own database, and nothing else.
APPLICATION_NAME = "app-interference"
TERMINATE_SQL = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE application_name = %s AND datname = current_database() "
    "AND pid <> pg_backend_pid()"
)


@dataclass(frozen=True)
class Neighbour:
    name: str
    commands: list[list[str]]


def psql(db: str, *statements: str) -> list[str]:
    command = ["psql", "-X", "-q", url(db)]
    for statement in statements:
        command += ["-c", statement]
    return command


def neighbours(db: str) -> list[Neighbour]:
    def inserting(commit: str, sleep: float) -> list[str]:
        return psql(db, f"SET synchronous_commit = {commit}", INSERTS % sleep)

    return [
        Neighbour("one core busy outside PostgreSQL", [["sh", "-c", "exec yes > /dev/null"]]),
        Neighbour("one backend computing", [psql(db, COMPUTE)]),
        Neighbour("two backends computing", [psql(db, COMPUTE), psql(db, COMPUTE)]),
        Neighbour("one backend inserting, commits not waiting", [inserting("off", 0)]),
        Neighbour("one backend inserting, commits waiting", [inserting("on", 0)]),
        Neighbour("one backend inserting at about half the rate", [inserting("off", 0.03)]),
    ]


def wal_mb(db: str) -> float:
    with psycopg.connect(url(db)) as conn:
        (lsn,) = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()  # type: ignore[misc]
    return float(lsn) / 2**20


@contextmanager
def beside(db: str, neighbour: Neighbour | None) -> Iterator[None]:
    """The neighbour's processes run for the block; each must still be running
    at its end (else the window measured the app alone), and none of their
    sessions outlives it."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for command in neighbour.commands if neighbour else []:
            processes.append(
                subprocess.Popen(
                    command,
                    env={**os.environ, "PGAPPNAME": APPLICATION_NAME},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        time.sleep(0.5 if processes else 0)
        yield
        for process in processes:
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"{neighbour and neighbour.name} stopped early: {error}")
    finally:
        for process in processes:
            process.terminate()
        end_sessions(db)
        for process in processes:
            process.wait()


def end_sessions(db: str) -> None:
    """End this benchmark's own sessions (psql's server side runs on without
    its client), wait until they are gone, then empty the insert table."""
    with psycopg.connect(url(db), autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute(TERMINATE_SQL, [APPLICATION_NAME]).fetchall():
            if time.monotonic() > deadline:
                raise RuntimeError("the neighbour's sessions did not end")
            time.sleep(0.1)
        conn.execute("TRUNCATE interference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive_int, default=200_000, help="organizations")
    parser.add_argument("--seconds", type=positive_int, default=20, help="each window")
    parser.add_argument("--rate", type=positive_int, default=200, help="app writes per second")
    parser.add_argument("--kind", choices=["orm", "plain"], default="plain", help="the app load")
    options = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    template = seed(options.rows)
    db = copy_of(template.db, f"{template.db}_interference")
    windows: list[tuple[str, float, float, float]] = []
    try:
        with psycopg.connect(url(db), autocommit=True) as conn:
            conn.execute("CREATE TABLE interference (id int, pad text)")
        with AppLoad(db, OUT / "load.json", rate=options.rate, kind=options.kind) as load:
            for neighbour in neighbours(db):
                for current in (None, neighbour):
                    with beside(db, current):
                        wal, start = wal_mb(db), time.time()
                        time.sleep(options.seconds)
                        end = time.time()
                        rate = (wal_mb(db) - wal) / (end - start)
                    windows.append((current.name if current else "alone", start, end, rate))
                    print(f"{windows[-1][0]}: done", flush=True)
    finally:
        drop(db)
        drop(template.db)
    print(f"\n| beside the {options.kind} app load | app p99 (ms) | app writes/s | WAL MB/s |")
    print("|---|---|---|---|")
    for name, start, end, rate in windows:
        report = load.report(start, end)
        print(f"| {name} | {report.p99_ms:.2f} | {report.writes_per_second:.0f} | {rate:.1f} |")


if __name__ == "__main__":
    main()
