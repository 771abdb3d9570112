"""Where a fill batch spends its time: each statement, lock waits, commit, Python.

    .venv/bin/python -m benchmarks.profile_batch --rows 1000000 --hot-share 0.2 --workers 2
    .venv/bin/python -m benchmarks.profile_batch --rows 100000 --hostile --workers 1 --size 1000
    .venv/bin/python -m benchmarks.profile_batch --rows 100000 --cheap --workers 1 --size 1000

Seeds a table (or copies `--template`), starts an `admin_groups` job (with
`--cheap`, `reading_labels` on the examples app's table, see cost.py) and works
its slices in WORKERS processes of this machine, no app load, each process
taking the slices whose number is its own modulo WORKERS. Every statement a
worker sends is timed by what it does (Django's execute wrapper), and so is
each COMMIT; what is left of a worker's wall time is Python and the network.
A sampler notes every 2 ms what the workers' backends wait on
(pg_stat_activity), so lock waits show apart from the statements they slow.
Prints one JSON line per worker and a table.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from backfill.management.arguments import fraction, positive_int
from benchmarks import hostile, tables
from benchmarks.databases import ROOT, copy_of, drop, env_for, shell, url
from benchmarks.templates import seed

APPLICATION_NAME = "profile-batch"
SAMPLE_SECONDS = 0.002

# What a statement does, by its text: the first pattern that matches names it.
KINDS = (
    ("select rows", re.compile(r"WITH candidates")),
    ("claim names", re.compile(r"WITH todo")),
    ("naming locks", re.compile(r"pg_(try_)?advisory")),
    ("update rows", re.compile(r'^UPDATE "(organizations_organization|examples_reading)"')),
    ("write log", re.compile(r'"backfill_write"')),
    ("slice row", re.compile(r'"backfill_slice"')),
    ("sample", re.compile(r'"backfill_sample"')),
    ("job status", re.compile(r'"backfill_job"')),
    ("settings", re.compile(r"set_config|SET ")),
)


def kind_of(statement: str) -> str:
    text = statement.lstrip()
    return next((name for name, pattern in KINDS if pattern.search(text)), "other")


class Timer:
    """Seconds per kind of statement, and per COMMIT, in this process."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: Counter[str] = Counter()

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            kind = kind_of(sql)
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - started
            self.calls[kind] += 1

    def timed_commit(self, commit: Callable[[], None]) -> Callable[[], None]:
        def wrapper() -> None:
            started = time.perf_counter()
            try:
                commit()
            finally:
                self.seconds["commit"] = (
                    self.seconds.get("commit", 0.0) + time.perf_counter() - started
                )
                self.calls["commit"] += 1

        return wrapper


def work(job_id: int, worker: int, workers: int, size: int) -> None:
    """In a worker process: step this worker's slices until none is open."""
    import django
    from django.conf import settings

    django.setup()
    from django.db import connection

    if size:
        # Every batch this size: the cost of a batch at that size, not the sizer's choice.
        settings.BACKFILL_MIN_BATCH_SIZE = settings.BACKFILL_MAX_BATCH_SIZE = size

    from backfill.engine.local import step
    from backfill.models import Slice

    timer = Timer()
    connection.ensure_connection()
    connection.cursor().execute("SET application_name = %s", [APPLICATION_NAME])
    connection._commit = timer.timed_commit(connection._commit)  # type: ignore[attr-defined]
    owner = f"profile-{worker}"
    started = time.perf_counter()
    with connection.execute_wrapper(timer):
        while True:
            mine = [
                pk
                for pk, number in Slice.objects.filter(job_id=job_id)
                .open()
                .values_list("pk", "number")
                if number % workers == worker
            ]
            if not mine:
                break
            for pk in mine:
                step(pk, owner, 5.0)
    wall = time.perf_counter() - started
    rows = sum(
        Slice.objects.filter(job_id=job_id, number__in=range(worker, 10_000, workers)).values_list(
            "rows_done", flat=True
        )
    )
    print(
        json.dumps(
            {
                "worker": worker,
                "wall": wall,
                "rows": rows,
                "seconds": dict(timer.seconds),
                "calls": dict(timer.calls),
            }
        )
    )


def start_job(db: str, target: "Target", workers: int, size: int) -> int:
    code = (
        "from backfill.engine import dispatch, service; from backfill.engine.local import LocalQueue; "
        "from backfill.models import Slice\n"
        "with dispatch.using(LocalQueue()):\n"
        f"    job = service.start({target.definition!r}, 'profile', "
        f"service.JobOptions.build(concurrency={workers}, pace=False, batch_size={size or None}))\n"
        "Slice.objects.filter(job=job).update(lease_owner='', lease_expires_at=None)\n"
        "print(job.pk)"
    )
    out = shell(db, code, DJANGO_SETTINGS_MODULE=target.settings)
    return int(out.strip().splitlines()[-1])


def sample_waits(db: str, stop: threading.Event, counts: Counter[str]) -> None:
    query = (
        "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '') "
        "FROM pg_stat_activity WHERE application_name = %s AND state = 'active'"
    )
    with psycopg.connect(url(db), autocommit=True) as conn:
        while not stop.is_set():
            for kind, event in conn.execute(query, [APPLICATION_NAME]).fetchall():
                counts[f"{kind} {event}".strip()] += 1
            time.sleep(SAMPLE_SECONDS)


@dataclass(frozen=True)
class Target:
    """The backfill profiled, and the settings module that registers it."""

    definition: str = "admin_groups"
    settings: str = "project.settings"


CHEAP = Target("reading_labels", tables.SETTINGS_MODULE)


def profile(
    template: str, workers: int, size: int = 0, target: Target = Target()
) -> tuple[list[dict[str, Any]], Counter[str], float, int]:
    db = copy_of(template, "backfill_profile_run")
    job = start_job(db, target, workers, size)
    stop, waits = threading.Event(), Counter[str]()
    sampler = threading.Thread(target=sample_waits, args=(db, stop, waits), daemon=True)
    sampler.start()
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.profile_batch",
                "--work",
                f"{job},{n},{workers},{size}",
            ],
            cwd=ROOT,
            env=env_for(db, DJANGO_SETTINGS_MODULE=target.settings),
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(workers)
    ]
    reports = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in processes]
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    with psycopg.connect(url(db)) as conn:
        timeouts = conn.execute(
            "SELECT coalesce(sum(lock_timeouts_total), 0) FROM backfill_slice WHERE job_id = %s",
            [job],
        ).fetchone()
    drop(db)
    return reports, waits, seconds, int(timeouts[0]) if timeouts else 0


def table(reports: list[dict[str, Any]], waits: Counter[str], seconds: float) -> str:
    """Seconds per kind of statement for each worker, then the same per batch in ms."""
    kinds = sorted(
        {k for r in reports for k in r["seconds"]},
        key=lambda k: -sum(r["seconds"].get(k, 0) for r in reports),
    )
    lines = [
        "| worker | rows | batches | wall s | " + " | ".join(kinds) + " | Python and network |"
    ]
    lines.append("|---" * (len(kinds) + 5) + "|")
    for r in reports:
        batches = r["calls"].get("commit", 0) or 1
        spent = sum(r["seconds"].values())
        for unit, scale in (("s", 1.0), ("ms/batch", 1000 / batches)):
            cells = [f"{r['seconds'].get(k, 0) * scale:.2f}" for k in kinds]
            lines.append(
                f"| {r['worker']} ({unit}) | {r['rows']:,} | {batches:,} | {r['wall']:.1f} | "
                + " | ".join(cells)
                + f" | {(r['wall'] - spent) * scale:.2f} |"
            )
    total = sum(waits.values()) or 1
    lines.append("")
    lines.append(f"all rows in {seconds:.1f} s; the workers' backends, sampled every 2 ms:")
    lines.extend(f"- {event}: {n / total:.1%}" for event, n in waits.most_common(8))
    return "\n".join(lines)


def seeded(options: argparse.Namespace) -> str:
    if options.cheap:
        return tables.seed(tables.CHEAP, options.rows)
    if options.hostile:
        return hostile.seed(options.rows).db
    return seed(options.rows, options.hot_share).db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive_int, default=1_000_000)
    parser.add_argument("--hot-share", type=fraction, default=0.0)
    parser.add_argument("--workers", type=positive_int, default=2)
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--hostile", action="store_true", help="seed benchmarks.hostile's table")
    shape.add_argument("--cheap", action="store_true", help="a cheap expression (cost.py's)")
    parser.add_argument(
        "--size", type=positive_int, default=0, help="every batch this many rows (default: sized)"
    )
    parser.add_argument("--template", help="a seeded database to copy instead of seeding")
    parser.add_argument("--work", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.work:
        job, worker, workers, size = (int(v) for v in options.work.split(","))
        work(job, worker, workers, size)
        return
    target = CHEAP if options.cheap else Target()
    template = options.template or seeded(options)
    reports, waits, seconds, timeouts = profile(template, options.workers, options.size, target)
    if not options.template:
        drop(template)
    print(table(reports, waits, seconds))
    print(f"lock timeouts counted by the job's slices: {timeouts}")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    main()
