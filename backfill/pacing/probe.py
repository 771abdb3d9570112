"""The latency probe's own process: commits timed where no batch shares the interpreter.

    BACKFILL_PROBE_CONNINFO="dbname=app host=..." python -m backfill.pacing.probe 0.05

Started by `health.LatencyProbe` beside a paced task's batches. A thread in
the worker would time the worker's own interpreter lock as much as the
database: beside a busy batch loop, a thread's commits read 3x their
baseline at the 90th percentile where the same commits from another process
read 1.3x. Each commit is `SELECT txid_current()` (it has an xid, so its
commit flushes WAL as an app's write does), and its time in milliseconds is
printed on a line of its own. The process ends when its parent stops
reading (or goes), or on SIGTERM. Nothing here imports Django: it starts in
a fraction of a second.
"""

import contextlib
import os
import sys
import time

import psycopg

CONNINFO_ENV = "BACKFILL_PROBE_CONNINFO"


def commit_ms(conn: psycopg.Connection) -> float:
    started = time.perf_counter()
    conn.execute("SELECT txid_current()")
    conn.commit()
    return (time.perf_counter() - started) * 1000


def probe(conninfo: str, spacing: float, parent: int) -> None:
    """Time commits until the parent goes; a lost connection is opened again."""
    while os.getppid() == parent:
        try:
            with psycopg.connect(conninfo, application_name="backfill-latency-probe") as conn:
                while os.getppid() == parent:
                    print(f"{commit_ms(conn):.3f}", flush=True)
                    time.sleep(spacing)
        except psycopg.Error:
            time.sleep(max(spacing, 1.0))


def main() -> None:
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        probe(os.environ[CONNINFO_ENV], float(sys.argv[1]), os.getppid())


if __name__ == "__main__":
    main()
