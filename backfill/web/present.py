"""What the dashboard says about a job, in words: how far, how fast and why, what it waits on.

The engine's numbers (`Progress`) stay numbers; this module turns them into
the sentences an operator reads at the top of the job page and in the slice
table, so the templates only lay them out.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from backfill import conf
from backfill.engine import display
from backfill.engine.options import JobOptions
from backfill.engine.progress import Progress, SliceProgress
from backfill.models import Job
from backfill.pacing.controller import AUTOVACUUM, LATENCY, REPLICA_LAG, STOPPING, TRANSACTION_AGE
from backfill.pacing.controller import WAL_RATE as WAL
from backfill.registry import Definition
from backfill.statuses import JobStatus

TIMES = "\u00d7"
SIGNALS = {
    LATENCY: "the app's commit latency",
    REPLICA_LAG: "replica lag",
    TRANSACTION_AGE: "the oldest open transaction",
    WAL: "the WAL rate",
    AUTOVACUUM: "autovacuum on the table",
}


def defaults_in_words(options: JobOptions | None = None) -> str:
    """What Start does with no option changed: "2 workers, paced by the database's health"."""
    options = options or JobOptions.build()
    workers = f"{options.concurrency} worker{'s' if options.concurrency != 1 else ''}"
    pause = f"{display.count(options.pause_ms)} ms between batches"
    if options.pace:
        floor = f", at least {pause}" if options.pause_ms else ""
        return f"{workers}, paced by the database's health{floor}"
    return f"{workers}, not paced, {pause if options.pause_ms else 'no pause between batches'}"


def budget(limit: str, job: Job) -> str:
    """The budget of a signal, as the job was started with it."""
    if limit == LATENCY:
        base = job.latency_baseline_ms
        of = f" of {base:.1f} ms" if base else ""
        return f"{job.max_latency_ratio:g}{TIMES} its baseline{of}"
    if limit == REPLICA_LAG:
        return f"{job.max_replica_lag_seconds:g} s"
    if limit == TRANSACTION_AGE:
        return f"{job.max_transaction_age_seconds:g} s"
    if limit == WAL:
        return f"{job.max_wal_mb_per_second:g} MB/s"
    return ""


def pace_in_words(job: Job, progress: Progress) -> str:
    """Why the job goes at the speed it does."""
    pace = progress.pace
    pause = f"{display.count(pace['pause_ms'])} ms"
    if not job.pace:
        return f"Pacing off: a fixed {pause} pause between batches."
    if job.status != JobStatus.RUNNING:
        return "Paced by the database's health while it runs."
    limit = pace["limit"]
    shed = ""
    if job.workers_writing < job.concurrency:
        shed = f"; {job.workers_writing} of {job.concurrency} workers writing"
    if not limit:
        return f"Paced by the database's health: nothing is limiting it ({pause} pause){shed}."
    signal = SIGNALS.get(limit, limit.replace("_", " "))
    if limit == AUTOVACUUM:
        return f"Holding its pace ({pause} pause) while {signal} clears the job's dead rows{shed}."
    within = f" (budget {budget(limit, job)})" if budget(limit, job) else ""
    if limit in STOPPING and pace["pause_ms"] >= conf.current().max_pace_pause_ms:
        return f"Stopped by {signal}{within}: it is close to its budget{shed}."
    return f"Slowed to a {pause} pause between batches by {signal}{within}{shed}."


@dataclass(frozen=True)
class Wait:
    what: str
    detail: str = ""


def waits(job: Job, progress: Progress) -> list[Wait]:
    """What the job is waiting on now, each in a sentence; empty when nothing."""
    found: list[Wait] = []
    held = progress.held
    if held:
        holders = sorted({str(row.get("pid")) for row in held if row.get("pid")})
        oldest = max((row.get("age_seconds") or 0 for row in held), default=0)
        who = f"session{'s' if len(holders) > 1 else ''} {', '.join(holders)}" if holders else ""
        found.append(
            Wait(
                f"{display.count(len(held))} row{'s' if len(held) != 1 else ''} held by "
                f"{who or 'a shared lock'}",
                f"open for {display.duration(oldest)}; retried with back-off until the holder "
                "commits or rolls back (table below)",
            )
        )
    limit = str(progress.pace.get("limit") or "")
    paced_stop = (
        job.status == JobStatus.RUNNING
        and limit in STOPPING
        and progress.pace["pause_ms"] >= conf.current().max_pace_pause_ms
    )
    if paced_stop:
        found.append(
            Wait(
                f"{SIGNALS[limit]} to come down",
                f"the workers look again every {display.duration(progress.pace['pause_ms'] / 1000)}"
                f" and go on once it is under its budget ({budget(limit, job)})",
            )
        )
    if job.status == JobStatus.RUNNING and job.pause_given_up_until:
        found.append(
            Wait(
                "nothing from latency pacing until " + display.clock(job.pause_given_up_until),
                "pausing the last worker was found not to lower the app's latency",
            )
        )
    if progress.lock_timeouts:
        n = progress.lock_timeouts
        found.append(
            Wait(
                f"{display.count(n)} batch{'es' if n != 1 else ''} gave up waiting for a lock",
                "each was retried; many in a row mean another transaction keeps the rows locked",
            )
        )
    return found


@dataclass(frozen=True)
class SliceRow:
    number: int
    status: str
    where: str
    where_detail: str
    rows: str
    fraction: float
    source: SliceProgress

    @property
    def label(self) -> str:
        return f"slice {self.number} progress"


def slice_rows(progress: Progress, definition: Definition | None) -> list[SliceRow]:
    noun = getattr(definition, "partition_label", "") or "partition values"
    return [slice_row(s, noun) for s in progress.slices]


def slice_row(s: SliceProgress, noun: str) -> SliceRow:
    keys = display.key_range(s.after, s.high)
    if s.modulus > 1:
        where = display.share(s.modulus, noun)
        detail = f"{keys}, partition hash mod {s.modulus} = {s.residue}"
    else:
        where, detail = keys, ""
    if s.status == "done" or not s.rows_expected:
        rows = f"{display.count(s.rows_done)} rows"
    elif s.rows_done > s.rows_expected:
        rows = f"{display.count(s.rows_done)} rows (about {display.count(s.rows_expected)} counted)"
    else:
        rows = f"{display.count(s.rows_done)} of about {display.count(s.rows_expected)}"
    return SliceRow(s.number, s.status, where, detail, rows, s.fraction, s)


def job_words(job: Job, progress: Progress) -> dict[str, Any]:
    """The three answers at the top of the job page."""
    eta = progress.eta_range_seconds
    return {
        "time_left": display.time_left(*eta) if eta else display.time_left(progress.eta_seconds),
        "elapsed": display.duration(
            (display.elapsed(job.started_at, job.finished_at) or timedelta(0)).total_seconds()
        ),
        "pace_words": pace_in_words(job, progress),
        "waits": waits(job, progress),
    }
