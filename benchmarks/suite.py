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

The same approaches run again, with no app load, on a skewed copy where a
fifth of the organizations share one name (B, S1, S2, S4 "skewed"); S4 is
four worker processes on this machine's cores. B and S2 run on two tables of
other shapes too (see tables.py): pending rows bunched before a gap of 10^12
in the ids ("gap"), and random UUID keys ("uuid"). Every run is verified
afterwards (see verify.py). Then the contract step
(`EnforceNotNull` beside a plain SET NOT NULL) on the table S2 filled, and
S2 alone at each `--scaling` size; and the expand and contract steps behind a
10-second transaction, queueing and waiting for a gap (see schema_gaps.py).
Prints a table and writes Markdown, JSON and a plot to `--out`.
"""

import argparse
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from backfill.management.arguments import positive_int
from benchmarks import contract_lock, report, schema_gaps, tables
from benchmarks.app_load import AppLoad, LoadReport, p99_timeline
from benchmarks.databases import ROOT, copy_of, drop, env_for, manage, recreate, url, vacuum_analyze
from benchmarks.verify import digest
from benchmarks.workers import BROKER_URL, Workers

PREFIX = "backfill_bench"
EXISTING_GROUPS = 1000
# The skewed table: this share of the rows all carry one name.
HOT_SHARE = 0.2
SKEWED = "skewed"
DEFAULT_OUT = ROOT / "docs" / "benchmarks"

# As long as a run under load, so that the reference's p99 rests on as many
# writes as the p99s weighed against it: 20 s (4,000 writes, the p99 their
# 40th slowest) read 4.2 to 5.7 ms in three windows one after the other.
REFERENCE_SECONDS = 60
# Each run under load is also weighed against the app alone on its own copy
# right before it: on a shared machine the app's p99 alone drifts over the
# day (5.2 ms in one run's reference, 15.6 ms in a run that afternoon,
# where B and S1 then ran at lower p99s than that), and a window next to
# the run drifts with it. The first seconds on a fresh copy are not
# counted: its pages are not yet in shared_buffers.
ALONE_SECONDS = 30
ALONE_WARMUP_SECONDS = 5


@dataclass(frozen=True)
class Template:
    """A seeded database that copies are made from."""

    db: str
    rows: int
    group_floor: int
    groups_digest: str


@dataclass
class Run:
    label: str
    method: str
    table_rows: int
    rows: int
    seconds: float
    started_at: float  # wall clock; the app load is judged from here for `seconds`
    peak_memory_mb: float
    extrapolated: bool
    verification: dict[str, int] = field(default_factory=dict)
    correct: bool = False
    # Batches of the job that gave up waiting for a lock (S runs only).
    lock_timeouts: int = 0
    load: LoadReport | None = None
    throughput: list[tuple[float, float]] = field(default_factory=list)
    app_p99: list[tuple[float, float]] = field(default_factory=list)
    # What health-aware pacing did (S2auto): seconds throttled, batches per limiting signal.
    pace: dict[str, Any] | None = None
    # The app load alone on the run's own copy, in the seconds right before the run.
    alone: LoadReport | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def table_seconds(self) -> float:
        """Time for the whole table; measured, or extrapolated from a sample."""
        return self.table_rows / self.rows_per_second if self.rows_per_second else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_per_second"] = round(self.rows_per_second, 1)
        data["table_seconds"] = round(self.table_seconds, 1)
        return data


def seed(rows: int, hot_share: float = 0.0) -> Template:
    db = recreate(f"{PREFIX}_{rows}" + (f"_{SKEWED}" if hot_share else ""))
    manage(db, "migrate", "-v0")
    manage(db, "migrate", "organizations", "0005", "-v0")
    manage(
        db,
        "seed_organizations",
        f"--count={rows}",
        f"--existing-groups={EXISTING_GROUPS}",
        f"--hot-share={hot_share}",
    )
    vacuum_analyze(db)
    with psycopg.connect(url(db)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM auth_group")
        floor = int(cursor.fetchone()[0])  # type: ignore[index]
        return Template(db, rows, floor, digest(cursor, floor))


def python_json(db: str, *args: str) -> dict[str, Any]:
    """Run one of the benchmark's Django-side modules against `db`; return its JSON line."""
    out = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env_for(db),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def check(run: "Run", template: Template, db: str) -> None:
    """Verify `db` once nothing writes to it any more; a full run must leave no row pending."""
    counts = python_json(
        db,
        "benchmarks.verify",
        f"--floor={template.group_floor}",
        f"--digest={template.groups_digest}",
    )
    broken = ("shared_groups", "orphan_groups", "took_existing_group", "misnamed")
    sound = not any(counts[k] for k in (*broken, "existing_groups_changed"))
    complete = run.extrapolated or (counts["pending"] == 0 and run.rows == template.rows)
    run.verification, run.correct = counts, sound and complete


def rates(progress: list[tuple[float, int]], start: float) -> list[tuple[float, float]]:
    """Rows per second between successive progress points, at their midpoints."""
    points = []
    for (t0, n0), (t1, n1) in itertools.pairwise(progress):
        if t1 > t0:
            points.extend(
                [(t0 - start, (n1 - n0) / (t1 - t0)), (t1 - start, (n1 - n0) / (t1 - t0))]
            )
    return points


def one_pass(template: Template, label: str, approach: str, sample: int) -> Callable[[str], Run]:
    """A or B: the pass runs in a process of its own and reports its own timing."""

    def run(db: str) -> Run:
        result = python_json(db, "benchmarks.passes", approach, f"--sample={sample}")
        progress = [(float(t), int(n)) for t, n in result["progress"]]
        return Run(
            label=label,
            method=METHODS[label],
            table_rows=template.rows,
            rows=result["rows"],
            seconds=result["seconds"],
            started_at=progress[0][0],
            peak_memory_mb=result["peak_rss_mb"],
            extrapolated=approach == "textbook",
            throughput=rates(progress, progress[0][0]),
        )

    return run


JOB_SQL = (
    "SELECT id, extract(epoch FROM started_at), extract(epoch FROM finished_at), status "
    "FROM backfill_job WHERE definition = %s ORDER BY id DESC LIMIT 1"
)
ROWS_DONE_SQL = (
    "SELECT coalesce(sum(rows_done), 0), coalesce(sum(lock_timeouts_total), 0) "
    "FROM backfill_slice WHERE job_id = %s"
)
SAMPLES_SQL = (
    "SELECT floor(extract(epoch FROM at)), sum(rows) FROM backfill_sample "
    "WHERE job_id = %s GROUP BY 1 ORDER BY 1"
)


def service(
    template: Template,
    label: str,
    workers: int,
    logs: Path,
    pause_ms: int = 0,
    pace: bool = False,
) -> Callable[[str], Run]:
    """S: real workers; timed by the job's own start and success timestamps.

    Unpaced unless `pace`: the S runs measure the engine itself; S2auto
    measures what health-aware pacing, left at its defaults, makes of it.
    """

    def run(db: str) -> Run:
        with Workers(db, workers, logs / label) as pool:
            manage(
                db,
                "backfill",
                "run",
                "admin_groups",
                f"--concurrency={workers}",
                f"--pause-ms={pause_ms}",
                f"--pace={'auto' if pace else 'off'}",
                quiet=True,
                REDIS_URL=BROKER_URL,
            )
        result = job_run(db, "admin_groups", label, template.rows, pool.peak_mb)
        result.method = METHODS.get(label, f"this service, {workers} workers") + (
            f", --pause-ms {pause_ms}" if pause_ms else ""
        )
        result.pace = pace_of(db) if pace else None
        return result

    return run


def job_run(db: str, definition: str, label: str, table_rows: int, peak_mb: float) -> Run:
    """The latest job of `definition` in `db`, as a run: its own start and success times."""
    with psycopg.connect(url(db)) as conn:
        job, started, finished, status = conn.execute(JOB_SQL, [definition]).fetchone()  # type: ignore[misc]
        per_second = conn.execute(SAMPLES_SQL, [job]).fetchall()
        rows_done, timeouts = conn.execute(ROWS_DONE_SQL, [job]).fetchone()  # type: ignore[misc]
    if status != "succeeded":
        raise RuntimeError(f"{label}: job {job} ended {status}")
    return Run(
        label=label,
        method=METHODS.get(label, label),
        table_rows=table_rows,
        rows=int(rows_done),
        lock_timeouts=int(timeouts),
        seconds=float(finished) - float(started),
        started_at=float(started),
        peak_memory_mb=round(peak_mb, 1),
        extrapolated=False,
        throughput=[(float(t) - float(started) + 0.5, float(n)) for t, n in per_second],
    )


METHODS = {
    "A": "textbook RunPython: ORM, row by row, one transaction",
    "B": "one set-based pass, one transaction",
    "S1": "this service, 1 worker",
    "S2": "this service, 2 workers",
    "S4": "this service, 4 workers",
    "S2auto": "this service, 2 workers, health-aware pacing at its defaults",
}


def pace_of(db: str) -> dict[str, Any]:
    """What pacing did in the latest job: seconds throttled, and the pause and
    limiting signal of every batch (the frontier it found)."""
    with psycopg.connect(url(db)) as conn:
        job, throttled, baseline = conn.execute(
            "SELECT id, throttled_seconds, latency_baseline_ms FROM backfill_job "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        limits = conn.execute(
            "SELECT coalesce(nullif(\"limit\", ''), 'none'), count(*), avg(pause_ms) "
            "FROM backfill_sample WHERE job_id = %s GROUP BY 1 ORDER BY 2 DESC",
            [job],
        ).fetchall()
    return {
        "throttled_seconds": round(float(throttled), 1),
        "latency_baseline_ms": baseline,
        "batches_by_limit": {name: int(n) for name, n, _ in limits},
        "mean_pause_ms_by_limit": {name: round(float(p), 1) for name, _, p in limits},
    }


def under_load(
    template: Template,
    label: str,
    measure: Callable[[str], Run],
    out: Path,
    rate: float,
    alone_seconds: float = ALONE_SECONDS,
) -> tuple[Run, str]:
    """Run `measure` on a fresh copy while the app load writes to it (none at rate 0),
    after `alone_seconds` of the load alone; returns the copy too."""
    db = copy_of(template.db, f"{PREFIX}_{label.lower().replace(' ', '_')}")
    if not rate:
        result = measure(db)
        check(result, template, db)
        return result, db
    with AppLoad(db, out / f"load-{label}.json", rate=rate) as load:
        time.sleep(ALONE_WARMUP_SECONDS)
        alone_from = time.time()
        time.sleep(alone_seconds)
        alone_until = time.time()
        result = measure(db)
    check(result, template, db)
    result.alone = load.report(alone_from, alone_until)
    start, end = result.started_at, result.started_at + result.seconds
    result.load = load.report(start, end)
    result.app_p99 = p99_timeline(load.writes, start, end)
    return result, db


def reference(template: Template, seconds: float, out: Path, rate: float) -> LoadReport:
    db = copy_of(template.db, f"{PREFIX}_ref")
    with AppLoad(db, out / "load-ref.json", rate=rate) as load:
        start = time.time()
        time.sleep(seconds)
        end = time.time()
    drop(db)
    return load.report(start, end)


def comparison(template: Template, options: argparse.Namespace, logs: Path) -> list[Run]:
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


def measure_all(
    template: Template,
    measures: dict[str, Callable[[str], Run]],
    logs: Path,
    rate: float,
    alone_seconds: float = ALONE_SECONDS,
) -> list[Run]:
    runs = []
    for label, measure in measures.items():
        run, db = under_load(template, label, measure, logs, rate, alone_seconds)
        run.label = label
        drop(db)
        print(
            f"{label}: {run.rows:,} rows in {run.seconds:.1f} s, "
            f"{run.lock_timeouts} lock timeouts, load {run.load}, alone before it {run.alone}",
            flush=True,
        )
        runs.append(run)
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
    import os
    import platform

    import psutil

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
        default=DEFAULT_OUT,
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
    skewed = seed(options.rows, HOT_SHARE)
    runs += skewed_comparison(skewed, logs)
    drop(skewed.db)
    runs += tables.comparison(options.rows, logs / "tables")
    scaling, contracts, gaps = scale(options.scaling, template, logs, options.rate)
    drop(template.db)
    results = report.Results(
        machine(options.rate), command.strip(), reference_load, runs, scaling, contracts, gaps
    )
    print(report.write(results, options.out))
    if options.out == DEFAULT_OUT:
        report.update_readme(results, ROOT / "README.md")


if __name__ == "__main__":
    main()
