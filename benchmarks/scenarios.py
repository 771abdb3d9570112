"""The approaches the suite compares, each as a measure: given a database, fill it and
return the Run it made.

A and B run as a process of their own (benchmarks.passes) and report their
own timing; the service's runs (S) are timed by the job's own start and
success timestamps, with real Celery workers.
"""

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.databases import manage, python_json, url
from benchmarks.results import Run
from benchmarks.templates import Template
from benchmarks.workers import BROKER_URL, Workers

Measure = Callable[[str], Run]

METHODS = {
    "A": "textbook RunPython: ORM, row by row, one transaction",
    "B": "one set-based pass, one transaction",
    "S1": "this service, 1 worker",
    "S2": "this service, 2 workers",
    "S4": "this service, 4 workers",
    "S2auto": "this service, 2 workers, health-aware pacing at its defaults",
}

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
PACE_JOB_SQL = (
    "SELECT id, throttled_seconds, latency_baseline_ms FROM backfill_job ORDER BY id DESC LIMIT 1"
)
# Batches by the signal that limited them ('none': nothing did), with their mean pause.
PACE_LIMITS_SQL = (
    "SELECT coalesce(nullif(\"limit\", ''), 'none'), count(*), avg(pause_ms) "
    "FROM backfill_sample WHERE job_id = %s GROUP BY 1 ORDER BY 2 DESC"
)


def rates(progress: list[tuple[float, int]], start: float) -> list[tuple[float, float]]:
    """Rows per second between successive progress points, at their midpoints."""
    points = []
    for (t0, n0), (t1, n1) in itertools.pairwise(progress):
        if t1 > t0:
            points.extend(
                [(t0 - start, (n1 - n0) / (t1 - t0)), (t1 - start, (n1 - n0) / (t1 - t0))]
            )
    return points


def one_pass(template: Template, label: str, approach: str, sample: int) -> Measure:
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


def service(
    template: Template,
    label: str,
    workers: int,
    logs: Path,
    pause_ms: int = 0,
    pace: bool = False,
) -> Measure:
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


def pace_of(db: str) -> dict[str, Any]:
    """What pacing did in the latest job: seconds throttled, and the pause and
    limiting signal of every batch (the frontier it found)."""
    with psycopg.connect(url(db)) as conn:
        job, throttled, baseline = conn.execute(PACE_JOB_SQL).fetchone()  # type: ignore[misc]
        limits = conn.execute(PACE_LIMITS_SQL, [job]).fetchall()
    return {
        "throttled_seconds": round(float(throttled), 1),
        "latency_baseline_ms": baseline,
        "batches_by_limit": {name: int(n) for name, n, _ in limits},
        "mean_pause_ms_by_limit": {name: round(float(p), 1) for name, _, p in limits},
    }
