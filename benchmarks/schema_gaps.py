"""The expand and contract steps behind a long transaction, while the app writes.

    .venv/bin/python -m benchmarks.schema_gaps --rows 1000000

A session reads the table and keeps its transaction open for `--hold`
seconds (a report, a pg_dump, an idle transaction), while the app load
writes 200 times a second. Each step runs through `migrate_with_timeouts`
twice: as it was documented before, with a 2 s lock timeout and PostgreSQL's
lock queue (BACKFILL_DDL_WAIT_FOR_GAPS=false: each attempt queues for its
lock, and the app's writes queue behind it), and as it is now (100 ms,
waiting for a gap). Reports the time each took and the app's
longest write meanwhile.
"""

import argparse
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.app_load import AppLoad
from benchmarks.contract_lock import TEMPLATE, build_template
from benchmarks.databases import ROOT, copy_of, drop, manage, url

# The documented command, as it was (a 2 s lock timeout, queueing) and as it is.
COMMANDS = {
    "queue": ("--lock-timeout-in-ms", "2000", "--lock-timeout-max-retries", "10"),
    "gap": ("--lock-timeout-in-ms", "100", "--lock-timeout-max-retries", "10"),
}
TABLE = "organizations_organization"


@dataclass(frozen=True)
class GapRun:
    step: str
    mode: str
    hold_seconds: float
    seconds: float
    app_writes: int
    app_p99_ms: float
    app_longest_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hold(db: str, seconds: float, ready: threading.Event) -> None:
    with psycopg.connect(url(db)) as holder:
        holder.execute(f"SELECT count(*) FROM {TABLE}")
        ready.set()
        time.sleep(seconds)


def behind_a_long_transaction(
    db: str, step: str, mode: str, target: str, hold_seconds: float, logs: Path, rate: float
) -> GapRun:
    ready = threading.Event()
    holder = threading.Thread(target=hold, args=(db, hold_seconds, ready))
    with AppLoad(db, logs / f"load-gaps-{step}-{mode}.json", rate=rate, insert_share=0.0) as load:
        time.sleep(2)
        holder.start()
        ready.wait(30)
        start, started = time.time(), time.monotonic()
        manage(
            db,
            "migrate_with_timeouts",
            "organizations",
            target,
            *COMMANDS[mode],
            quiet=True,
            BACKFILL_DDL_WAIT_FOR_GAPS="true" if mode == "gap" else "false",
        )
        took = time.monotonic() - started
        holder.join()
        time.sleep(1)
    report = load.report(start, start + took)
    return GapRun(
        step, mode, hold_seconds, round(took, 2), report.writes, report.p99_ms, report.max_ms
    )


def measure(
    seeded: str, filled: str, logs: Path, rate: float = 200.0, hold_seconds: float = 10.0
) -> list[GapRun]:
    """Expand on copies of `seeded` taken back before it; contract on copies of `filled`."""
    runs = []
    for mode in ("queue", "gap"):
        db = copy_of(seeded, f"{seeded}_gaps")
        manage(db, "migrate", "organizations", "0002", "-v0")
        runs.append(behind_a_long_transaction(db, "expand", mode, "0003", hold_seconds, logs, rate))
        drop(db)
        db = copy_of(filled, f"{filled}_gaps")
        runs.append(
            behind_a_long_transaction(db, "contract", mode, "0006", hold_seconds, logs, rate)
        )
        drop(db)
    for run in runs:
        print(
            f"{run.step} ({run.mode}) behind a {run.hold_seconds:.0f} s transaction: "
            f"applied in {run.seconds:.1f} s; app's longest write {run.app_longest_ms:,.0f} ms",
            flush=True,
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--hold", type=float, default=10.0, help="seconds the transaction stays open"
    )
    options = parser.parse_args()
    logs = ROOT / "benchmarks" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    build_template(options.rows)  # every row filled, the column still nullable
    measure(TEMPLATE, TEMPLATE, logs, hold_seconds=options.hold)
    drop(TEMPLATE)


if __name__ == "__main__":
    main()
