"""Rows per second: this service with real workers beside one set-based pass.

    .venv/bin/python -m benchmarks.engine_vs_single_pass --rows 1000000 --workers 2

Seeds ROWS legacy organizations once into a template database, then on two
identical copies (CREATE DATABASE ... TEMPLATE) measures:

- B: one set-based pass in one transaction, the same naming statement the
  service uses, over every row at once (the speed limit of one statement);
- S: `backfill run admin_groups` with WORKERS real Celery worker processes,
  from start to succeeded.

Both copies are verified afterwards with `backfill check`.
"""

import argparse
import subprocess
import sys
import time

from benchmarks.databases import ROOT, copy_of, env_for, manage, recreate, shell, vacuum_analyze

TEMPLATE = "backfill_bench_template"


BROKER = {"REDIS_URL": "redis://127.0.0.1:6379/14"}


def build_template(rows: int) -> None:
    recreate(TEMPLATE)
    manage(TEMPLATE, "migrate", "-v0")
    manage(TEMPLATE, "migrate", "organizations", "0004", "-v0")
    manage(TEMPLATE, "seed_organizations", "--count", str(rows), "--existing-groups", "1000")
    vacuum_analyze(TEMPLATE)


SINGLE_PASS = """
import time
from django.db import connection, transaction
from organizations.backfills import AdminGroups
started = time.monotonic()
with transaction.atomic(), connection.cursor() as cursor:
    cursor.execute("SET LOCAL jit = off")
    cursor.execute("SELECT id, name FROM organizations_organization WHERE admin_id IS NULL ORDER BY id")
    rows = cursor.fetchall()
    AdminGroups().fill(cursor, rows)
print(f"SECONDS {time.monotonic() - started:.3f}")
"""


def single_pass(rows: int) -> float:
    db = copy_of(TEMPLATE, "backfill_bench_single")
    out = shell(db, SINGLE_PASS)
    seconds = float(out.split("SECONDS")[1])
    manage(db, "backfill", "check", "admin_groups")
    return rows / seconds


def service(rows: int, workers: int) -> float:
    db = copy_of(TEMPLATE, "backfill_bench_service")
    logs = ROOT / "benchmarks" / "logs"
    logs.mkdir(exist_ok=True)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "project",
                "worker",
                "-Q",
                "backfill,default",
                "-c",
                "1",
                "-n",
                f"bench{i}@%h",
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            env=env_for(db, **BROKER),
            stdout=(logs / f"worker{i}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for i in range(workers)
    ]
    try:
        time.sleep(4)
        manage(
            db,
            "backfill",
            "run",
            "admin_groups",
            "--concurrency",
            str(workers),
            quiet=True,
            **BROKER,
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    manage(db, "backfill", "check", "admin_groups")
    return rows / job_seconds(db)


JOB_SECONDS = """
from backfill.models import Job
job = Job.objects.get(definition="admin_groups")
print(f"SECONDS {(job.finished_at - job.started_at).total_seconds():.3f}")
"""


def job_seconds(db: str) -> float:
    """From the job's start to its success, as recorded by the engine itself."""
    return float(shell(db, JOB_SECONDS).split("SECONDS")[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    build_template(options.rows)
    b = single_pass(options.rows)
    s = service(options.rows, options.workers)
    print(f"B, one set-based pass, one transaction: {b:,.0f} rows/s")
    print(f"S, service with {options.workers} workers:          {s:,.0f} rows/s  ({s / b:.2f}x B)")


if __name__ == "__main__":
    main()
