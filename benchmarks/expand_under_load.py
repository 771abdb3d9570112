"""Apply the expand migration to a large table while an app keeps writing to it.

    .venv/bin/python -m benchmarks.expand_under_load --rows 1000000

Creates (or recreates) the database `backfill_bench_expand`, migrates to the
state before the admin link, seeds ROWS legacy organizations, then applies the
expand migration with `migrate_with_timeouts` while a second process updates
random rows through the ORM 200 times a second, and prints that writer's latencies.
"""

import argparse
import time

from benchmarks.app_load import AppLoad
from benchmarks.databases import ROOT, manage, recreate, vacuum_analyze

DB = "backfill_bench_expand"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0, help="app writes per second")
    options = parser.parse_args()

    recreate(DB)
    manage(DB, "migrate", "-v0")
    manage(DB, "migrate", "organizations", "0002", "-v0")
    manage(DB, "seed_organizations", "--count", str(options.rows))
    vacuum_analyze(DB)

    # Updates only: before the expand step the table has no admin column to insert into.
    out = ROOT / "benchmarks" / "logs" / "load-expand.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with AppLoad(DB, out, rate=options.rate, insert_share=0.0) as load:
        time.sleep(2)
        start, started = time.time(), time.monotonic()
        manage(
            DB,
            "migrate_with_timeouts",
            "organizations",
            "0003",
            "--lock-timeout-in-ms",
            "2000",
            "--lock-timeout-max-retries",
            "10",
        )
        migrate_seconds = time.monotonic() - started
        time.sleep(2)
    print(f"expand migration on {options.rows:,} rows: {migrate_seconds:.2f} s")
    print(f"app writes during it: {load.report(start, start + migrate_seconds).as_dict()}")


if __name__ == "__main__":
    main()
