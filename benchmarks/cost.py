"""Cost per row: the service against one SQL pass and the Django peer, no app load.

    .venv/bin/python -m benchmarks.cost --rows 1000000

Two tables, each approach on its own identical copy, in one run:

- hostile (benchmarks/hostile.py): a fifth of the organizations one name,
  names colliding after truncation, numbers taken, ids in random order.
  B (the service's naming statement over every row, one transaction), S1
  and S2 (`backfill run admin_groups --pace off` with 1 and 2 real Celery
  workers), each verified as the suite verifies (benchmarks/verify.py);
- cheap: `'r' || value` into every row of examples_reading (dense keys, all
  pending). B (one UPDATE), S1, S2, and P, django-deferred-migrations'
  `run_batched_update` at its defaults (benchmarks/peer.py), each checked
  row by row against the expression.

Prints a Markdown table (rows/s, each run against B and P, and for the
service the seconds its workers spent inside batches, summed over workers)
and writes it to `--out` (docs/benchmarks/cost.md).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from backfill.management.arguments import positive_int
from benchmarks import hostile, peer, tables
from benchmarks.databases import ROOT, copy_of, drop, env_for, url
from benchmarks.results import Run
from benchmarks.runner import check
from benchmarks.scenarios import Measure, one_pass, service

OUT = ROOT / "docs" / "benchmarks" / "cost.md"
CHEAP = tables.CHEAP
# Seconds the latest job's batches took, summed over workers (each batch's
# sample, timed up to its commit; a job keeps its latest 2,000): what is left
# of the job's time is the service around its batches, commits included.
BATCH_SECONDS_SQL = (
    "SELECT coalesce(sum(duration_ms), 0) / 1000 FROM backfill_sample "
    "WHERE job_id = (SELECT max(id) FROM backfill_job)"
)


def batch_seconds(db: str) -> float:
    with psycopg.connect(url(db)) as conn:
        (seconds,) = conn.execute(BATCH_SECONDS_SQL).fetchone()  # type: ignore[misc]
    return float(seconds)


def peer_pass(table: tables.Table, rows: int) -> Measure:
    def run(db: str) -> Run:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.peer",
                table.table,
                "id",
                f"{table.column} = {table.expression}",
                f"{table.column} IS NULL",
            ],
            cwd=ROOT,
            env=env_for(db, DJANGO_SETTINGS_MODULE=tables.SETTINGS_MODULE),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        started = float(result["progress"][0][0])
        method = "django-deferred-migrations run_batched_update, defaults, 1 process"
        return Run("P", method, rows, int(result["rows"]), result["seconds"], started, 0, False)

    return run


def hostile_runs(rows: int, logs: Path) -> list[Run]:
    template = hostile.seed(rows)
    measures = {
        "B": one_pass(template, "B", "set-based", 0),
        "S1": service(template, "S1", 1, logs / "hostile"),
        "S2": service(template, "S2", 2, logs / "hostile"),
    }
    runs = []
    for label, measure in measures.items():
        db = copy_of(template.db, f"{template.db}_run")
        run = measure(db)
        check(run, template, db)
        if label.startswith("S"):
            run.batch_seconds = batch_seconds(db)
        drop(db)
        run.label = f"{label} hostile"
        report(run)
        runs.append(run)
    drop(template.db)
    return runs


def cheap_runs(rows: int, logs: Path) -> list[Run]:
    template = tables.seed(CHEAP, rows)
    measures = {
        "B": tables.set_based(CHEAP, rows),
        "S1": tables.service(CHEAP, rows, logs / "cheap", workers=1),
        "S2": tables.service(CHEAP, rows, logs / "cheap", workers=2),
    }
    if peer.available():
        measures["P"] = peer_pass(CHEAP, rows)
    else:
        print(peer.INSTALL, flush=True)
    runs = []
    for label, measure in measures.items():
        db = copy_of(template, f"{template}_run")
        run = measure(db)
        wrong = CHEAP.wrong(db)
        run.verification = {"wrong": wrong}
        run.correct = wrong == 0 and run.rows == rows
        if label.startswith("S"):
            run.batch_seconds = batch_seconds(db)
        drop(db)
        run.label = f"{label} cheap"
        report(run)
        runs.append(run)
    drop(template)
    return runs


def report(run: Run) -> None:
    print(
        f"{run.label}: {run.rows:,} rows in {run.seconds:.1f} s "
        f"({run.rows_per_second:,.0f} rows/s), correct {run.correct}",
        flush=True,
    )


def table(runs: list[Run], command: str) -> str:
    by_label = {run.label: run for run in runs}
    lines = [
        f"`{command}`, {time.strftime('%Y-%m-%d')}, no app load, `--pace off`.",
        "",
        "| run | rows | seconds | in batches (s) | rows/s | vs B | vs P | verified |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        shape = run.label.split()[-1]
        base, yardstick = by_label.get(f"B {shape}"), by_label.get(f"P {shape}")
        versus_b = f"{run.rows_per_second / base.rows_per_second:.2f}x" if base else ""
        versus_p = f"{run.rows_per_second / yardstick.rows_per_second:.2f}x" if yardstick else ""
        batches = f"{run.batch_seconds:.1f}" if run.batch_seconds is not None else ""
        lines.append(
            f"| {run.label} | {run.rows:,} | {run.seconds:.1f} | {batches} "
            f"| {run.rows_per_second:,.0f} "
            f"| {versus_b} | {versus_p} | {'yes' if run.correct else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive_int, default=1_000_000)
    parser.add_argument("--shapes", default="hostile,cheap", help="hostile,cheap (both)")
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args()
    shapes = options.shapes.split(",")
    unknown = set(shapes) - {"hostile", "cheap"}
    if unknown:
        parser.error(f"unknown shapes: {', '.join(sorted(unknown))}")
    logs = ROOT / "benchmarks" / "logs" / "cost"
    runs = hostile_runs(options.rows, logs) if "hostile" in shapes else []
    runs += cheap_runs(options.rows, logs) if "cheap" in shapes else []
    text = table(runs, "python -m benchmarks.cost " + " ".join(sys.argv[1:]))
    options.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
