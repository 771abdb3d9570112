"""The benchmark suite: the service against the alternatives, under a live app's load.

    .venv/bin/python -m benchmarks.suite --rows 1000000 --scaling 100000,1000000,10000000

Seeds ROWS legacy organizations once (10% sharing names, 1,000 pre-existing
groups occupying admin names) into a template database, then on identical
copies of it (CREATE DATABASE ... TEMPLATE) measures, while a separate
process writes through the ORM as the app would (see app_load.py):

- ref: that load alone, the reference; and before each run, the load alone
  on that run's copy for `--alone-seconds`, which the run is weighed against;
- A: the textbook RunPython pass through the ORM, on a sample, extrapolated;
- B: one set-based pass in one transaction;
- S1, S2: this service with 1 and 2 real Celery worker processes, from
  `backfill start` to `succeeded`.

B and S2auto run again under a load of another kind: plain SQL from psycopg,
not the ORM, a fifth of it reading the row FOR UPDATE before updating it.

The same approaches run again, with no app load, on a skewed copy where a
fifth of the organizations share one name (B, S1, S2, S4 "skewed"); S4 is
four worker processes on this machine's cores. B and S2 run on two tables of
other shapes too (see tables.py): pending rows bunched before a gap of 10^12
in the ids ("gap"), and random UUID keys ("uuid"). The cost-per-row shapes
of cost.py follow, with no app load: B, S1 and S2 on the hostile table, and
those and the Django peer (P) on a cheap expression. Every run is verified
afterwards (see verify.py). Then the contract step
(`EnforceNotNull` beside a plain SET NOT NULL) on the table S2 filled, and
S2 alone at each `--scaling` size; and the expand and contract steps behind a
10-second transaction, queueing and waiting for a gap (see schema_gaps.py).
Prints a table and writes Markdown, JSON and plots to `--out`.

This module is the suite's programme and command line; the rest lives in
modules named for what they hold: templates (the seeded databases),
scenarios (A, B and the service's runs), runner (a run under the app's load,
verified), results (the model and its JSON), targets, and the report
(markdown, plots, readme), which `python -m benchmarks.report` renders again
from a results.json.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

from backfill.management.arguments import positive_int
from benchmarks import contract_lock, cost, report, schema_gaps, tables
from benchmarks.databases import ROOT, copy_of, drop, url
from benchmarks.results import Results, Run
from benchmarks.runner import ALONE_SECONDS, REFERENCE_SECONDS, check, measure_all, reference
from benchmarks.scenarios import one_pass, service
from benchmarks.templates import HOT_SHARE, PREFIX, SKEWED, Template, seed


def comparison(template: Template, options: argparse.Namespace, logs: Path) -> list[Run]:
    """Every approach on the main table, under the app's load."""
    measures = {
        "A": one_pass(template, "A", "textbook", options.sample),
        "B": one_pass(template, "B", "set-based", 0),
        "S1": service(template, "S1", 1, logs),
        "S2": service(template, "S2", 2, logs),
        "S2p": service(template, "S2p", 2, logs, options.pause_ms),
        "S2auto": service(template, "S2auto", 2, logs, pace=True),
        "S4": service(template, "S4", 4, logs),
    }
    return measure_all(template, measures, logs, options.rate, options.alone_seconds)


def skewed_comparison(template: Template, logs: Path) -> list[Run]:
    """B and the service on the skewed table, with no app load: the job alone with itself."""
    measures = {
        f"B {SKEWED}": one_pass(template, "B", "set-based", 0),
        f"S1 {SKEWED}": service(template, "S1", 1, logs / SKEWED),
        f"S2 {SKEWED}": service(template, "S2", 2, logs / SKEWED),
        f"S4 {SKEWED}": service(template, "S4", 4, logs / SKEWED),
    }
    runs = measure_all(template, measures, logs, 0)
    for run in runs:
        run.method += f", {HOT_SHARE:.0%} of rows one name, no app load"
    return runs


def plain_comparison(template: Template, options: argparse.Namespace, logs: Path) -> list[Run]:
    """B and S2auto again, under an app load that is not the ORM: plain SQL,
    some of it holding a row lock across a round trip."""
    measures = {
        "B plain": one_pass(template, "B", "set-based", 0),
        "S2auto plain": service(template, "S2auto", 2, logs / "plain", pace=True),
    }
    runs = measure_all(template, measures, logs, options.rate, options.alone_seconds, "plain")
    for run in runs:
        run.method += ", under a plain-SQL app load"
    return runs


def scale(
    sizes: list[int], main: Template, logs: Path, rate: float
) -> tuple[list[Run], list[contract_lock.ContractTimes], list[schema_gaps.GapRun]]:
    """S2 alone at each size, then the contract step on the table it filled; at the
    main size, the expand and contract steps behind a long transaction too."""
    runs, contracts, gaps = [], [], []
    for rows in sizes:
        template = main if rows == main.rows else seed(rows)
        db = copy_of(template.db, f"{PREFIX}_scaling")
        run = service(template, "S2", 2, logs / f"scaling-{rows}")(db)
        check(run, template, db)
        runs.append(run)
        print(f"scaling {rows:,}: {run.rows_per_second:,.0f} rows/s", flush=True)
        contracts.append(contract_lock.measure(db, rows))
        print(f"contract {rows:,}: {contracts[-1]}", flush=True)
        if template is main:
            gaps = schema_gaps.measure(main.db, db, logs, rate)
        drop(db)
        if template is not main:
            drop(template.db)
    return runs, contracts, gaps


def machine(rate: float) -> dict[str, Any]:
    """What the figures were measured on: compare ratios within one machine's run."""
    with psycopg.connect(url("postgres")) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        buffers = conn.execute("SHOW shared_buffers").fetchone()
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "postgresql": version[0] if version else "?",
        "shared_buffers": buffers[0] if buffers else "?",
        "python": platform.python_version(),
        "app_load": f"{rate:.0f} ORM writes/s, 80% single-row updates, 20% inserts",
    }


def sizes(text: str) -> list[int]:
    values = sorted({positive_int(v) for v in text.split(",")})
    if values[0] < 1000:
        raise argparse.ArgumentTypeError(f"each size must be at least 1000 rows, got {text!r}")
    return values


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=positive_int, default=1_000_000, help="table size (1,000,000)"
    )
    parser.add_argument("--sample", type=positive_int, default=20_000, help="rows A does (20,000)")
    parser.add_argument(
        "--rate", type=positive_int, default=200, help="app writes per second (200)"
    )
    parser.add_argument(
        "--reference-seconds",
        type=positive_int,
        default=REFERENCE_SECONDS,
        help=f"how long the app load runs alone, the reference ({REFERENCE_SECONDS})",
    )
    parser.add_argument(
        "--alone-seconds",
        type=positive_int,
        default=ALONE_SECONDS,
        help=f"how long the app load runs alone before each run under it ({ALONE_SECONDS})",
    )
    parser.add_argument(
        "--pause-ms",
        type=positive_int,
        default=250,
        help="pause between batches for the throttled run S2p (250)",
    )
    parser.add_argument(
        "--scaling",
        type=sizes,
        default=[100_000, 1_000_000],
        help="sizes for S2 alone and the contract step (100000,1000000; add 10000000)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=report.OUT,
        help="where results go (docs/benchmarks, which also updates the README's table)",
    )
    return parser.parse_args()


def main() -> None:
    options = arguments()
    logs = ROOT / "benchmarks" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.suite " + " ".join(sys.argv[1:])
    template = seed(options.rows)
    reference_load = reference(template, options.reference_seconds, logs, options.rate)
    print(f"reference load: {reference_load}", flush=True)
    runs = comparison(template, options, logs)
    runs += plain_comparison(template, options, logs)
    skewed = seed(options.rows, HOT_SHARE)
    runs += skewed_comparison(skewed, logs)
    drop(skewed.db)
    runs += tables.comparison(options.rows, logs / "tables")
    runs += cost.hostile_runs(options.rows, logs / "cost")
    runs += cost.cheap_runs(options.rows, logs / "cost")
    scaling, contracts, gaps = scale(options.scaling, template, logs, options.rate)
    drop(template.db)
    results = Results(
        machine(options.rate), command.strip(), reference_load, runs, scaling, contracts, gaps
    )
    print(report.write(results, options.out))


if __name__ == "__main__":
    main()
