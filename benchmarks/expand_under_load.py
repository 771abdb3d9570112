"""Apply the expand migration to a large table while an app keeps writing to it.

    .venv/bin/python -m benchmarks.expand_under_load --rows 1000000

Creates (or recreates) the database `backfill_bench_expand`, migrates to the
state before the admin link, seeds ROWS legacy organizations, then applies the
expand migration with `migrate_with_timeouts` while a second process updates
random rows 200 times a second, and prints that writer's latencies.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.load import AppLoad

ROOT = Path(__file__).resolve().parent.parent
DB = "backfill_bench_expand"
SERVER = "postgres://postgres@127.0.0.1:5432"


def manage(*args: str) -> None:
    env = dict(os.environ, DATABASE_URL=f"{SERVER}/{DB}")
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def recreate_database() -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0, help="app writes per second")
    options = parser.parse_args()

    recreate_database()
    manage("migrate", "-v0")
    manage("migrate", "organizations", "0002", "-v0")
    manage("seed_organizations", "--count", str(options.rows))
    with psycopg.connect(f"{SERVER}/{DB}", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE organizations_organization")

    with AppLoad(f"{SERVER}/{DB}", rate=options.rate) as load:
        time.sleep(2)
        started = time.monotonic()
        manage(
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
    assert load.report is not None
    print(f"expand migration on {options.rows:,} rows: {migrate_seconds:.2f} s")
    print(f"app writes during it: {load.report.as_dict()}")


if __name__ == "__main__":
    main()
