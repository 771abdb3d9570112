"""Progress, rate and ETA of a job, computed from its slices and recent samples.

Kept apart from storage: the CLI, the dashboard, the JSON API and the metrics
all show the same numbers because they all come from `job_progress`.
"""

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Min, Sum
from django.utils import timezone

from backfill.engine.lifecycle import actions_for
from backfill.models import Job, Sample
from backfill.statuses import WORKING_STATUSES, JobStatus

RATE_WINDOW = timedelta(seconds=60)
# The window's slots whose rates bound the ETA's range: a pace that varies
# (pacing slows down and speeds up, workers are shed) gives a range, not one figure.
RATE_SLOTS = 6


@dataclass(frozen=True)
class SliceProgress:
    number: int
    status: str
    # Keys (after, high] in their text form; `after` is None for the first slice.
    after: str | None
    high: str
    cursor: str | None
    rows_done: int
    rows_reverted: int
    passes: int
    attempts: int
    last_error: str
    # Batches that gave up waiting for a lock, since the slice began.
    lock_timeouts: int = 0
    # "r mod m": the slice's share of the partition hashes, or "" for a key range.
    share: str = ""
    modulus: int = 1
    residue: int = 0
    # Rows another transaction holds, with who holds them (see held.py).
    held: tuple[dict[str, Any], ...] = ()

    # Pending rows counted in the slice's keys when it was made.
    rows_expected: int = 0

    @property
    def fraction(self) -> float:
        """Done, or rows filled over rows counted when the slice was made."""
        if self.status == "done":
            return 1.0
        return min(1.0, self.rows_done / self.rows_expected) if self.rows_expected else 0.0

    @property
    def weight(self) -> int:
        return max(self.rows_expected, 1)


@dataclass(frozen=True)
class Progress:
    job_id: int
    name: str
    status: str
    rows_done: int
    rows_total: int
    rows_total_is_estimate: bool
    rows_per_second: float
    eta_seconds: float | None
    slices: tuple[SliceProgress, ...]
    actions: tuple[str, ...] = ()
    # Health-aware pacing: on or off, the budgets, and what the workers found last.
    pace: dict[str, Any] = field(default_factory=dict)
    # The ETA at the fastest and the slowest rate of the last minute's slots
    # (None when not running); equal when the pace was steady.
    eta_range_seconds: tuple[float, float] | None = None

    @property
    def rows_reverted(self) -> int:
        return sum(s.rows_reverted for s in self.slices)

    @property
    def lock_timeouts(self) -> int:
        """Batches that gave up waiting for a lock: the app's rows, or the job's own."""
        return sum(s.lock_timeouts for s in self.slices)

    @property
    def held(self) -> list[dict[str, Any]]:
        """The rows the job waits on, across its slices."""
        return [row for s in self.slices for row in s.held]

    @property
    def slice_fraction(self) -> float:
        """The slices' progress, each weighted by the rows it was made for."""
        weight = sum(s.weight for s in self.slices)
        if weight <= 0:
            return 0.0
        return sum(s.fraction * s.weight for s in self.slices) / weight

    @property
    def fraction(self) -> float:
        """Done over total when the total is exact; else the slices' own progress.

        Never 100% before the job has succeeded: a stale estimate must not show
        a finished bar over a running job.
        """
        if self.status in (JobStatus.SUCCEEDED, JobStatus.REVERTED):
            return 1.0
        if self.status == JobStatus.REVERTING:
            return min(0.999, self.rows_reverted / self.rows_done) if self.rows_done else 0.0
        if not self.rows_total_is_estimate and self.rows_total > 0:
            return min(0.999, self.rows_done / self.rows_total)
        return min(0.999, self.slice_fraction)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["slices"] = [asdict(s) for s in self.slices]
        data["percent"] = round(self.fraction * 100, 1)
        data["rows_reverted"] = self.rows_reverted
        data["actions"] = list(self.actions)
        data["held"] = self.held
        data["lock_timeouts"] = self.lock_timeouts
        return data


def rate(job: Job) -> float:
    """Rows per second committed over the last minute (0 when nothing ran)."""
    now = timezone.now()
    recent = Sample.objects.filter(job=job, at__gte=now - RATE_WINDOW).aggregate(
        rows=Sum("rows"), first=Min("at")
    )
    if not recent["rows"] or recent["first"] is None:
        return 0.0
    span = max((now - recent["first"]).total_seconds(), 1.0)
    return float(recent["rows"]) / float(span)


def rate_spread(job: Job) -> tuple[float, float]:
    """The slowest and fastest rows per second over the slots of the last minute.

    Only slots since the job's first sample there count (a job that just began
    has no slow start to blame), and the slowest is never below half the
    minute's average: one stopped slot must not make the ETA endless.
    """
    now = timezone.now()
    since = now - RATE_WINDOW
    # A worker's clock a little ahead of this one must not put a sample past the window.
    samples = list(
        Sample.objects.filter(job=job, at__gte=since, at__lte=now).values_list("at", "rows")
    )
    if not samples:
        return 0.0, 0.0
    width = RATE_WINDOW.total_seconds() / RATE_SLOTS
    first = min(at for at, _ in samples)
    totals = [0] * RATE_SLOTS
    for at, rows in samples:
        totals[min(RATE_SLOTS - 1, int((at - since).total_seconds() / width))] += rows
    begun = min(RATE_SLOTS - 1, int((first - since).total_seconds() / width))
    rates = [total / width for total in totals[begun:]]
    average = sum(totals) / max((now - first).total_seconds(), 1.0)
    return max(min(rates), average / 2), max(max(rates), average)


def average_rate(job: Job, rows_done: int) -> float:
    """A finished job's rows per second from start to end: what an operator asks of it.

    0 while paused or not started: nothing is moving then.
    """
    if job.started_at is None or job.finished_at is None:
        return 0.0
    seconds = (job.finished_at - job.started_at).total_seconds()
    return rows_done / seconds if seconds > 0 else 0.0


def job_progress(job: Job) -> Progress:
    slices = tuple(
        SliceProgress(
            number=s.number,
            status=s.status,
            after=s.after,
            high=s.high,
            cursor=s.cursor,
            rows_expected=s.rows_expected,
            rows_done=s.rows_done,
            rows_reverted=s.rows_reverted,
            passes=s.passes,
            attempts=s.attempts,
            last_error=s.last_error,
            lock_timeouts=s.lock_timeouts_total,
            share=f"{s.residue} mod {s.modulus}" if s.modulus > 1 else "",
            modulus=s.modulus,
            residue=s.residue,
            held=tuple(s.held) if s.held_keys else (),
        )
        # job.slices.all() uses prefetch_related("slices") when the caller did it.
        for s in sorted(job.slices.all(), key=lambda s: s.number)
    )
    done = sum(s.rows_done for s in slices)
    total = max(job.rows_total, done)
    working = job.status in WORKING_STATUSES
    per_second = rate(job) if working else average_rate(job, done)
    remaining = max(0, total - done)
    if job.rows_total_is_estimate and slices:
        visited = Progress(
            job.pk, job.definition, job.status, done, total, True, 0.0, None, slices
        ).slice_fraction
        if visited > 0:
            remaining = int(done * (1 - visited) / visited)
            total = done + remaining
    eta = remaining / per_second if per_second > 0 and job.status == JobStatus.RUNNING else None
    eta_range = None
    if eta is not None:
        slowest, fastest = rate_spread(job)
        if slowest > 0:
            eta_range = (
                round(min(eta, remaining / fastest), 1),
                round(max(eta, remaining / slowest), 1),
            )
    return Progress(
        job_id=job.pk,
        name=job.definition,
        status=job.status,
        rows_done=done,
        rows_total=total,
        rows_total_is_estimate=job.rows_total_is_estimate,
        rows_per_second=round(per_second, 1),
        eta_seconds=round(eta, 1) if eta is not None else None,
        slices=slices,
        actions=tuple(actions_for(job)),
        pace=pace_of(job),
        eta_range_seconds=eta_range,
    )


def pace_of(job: Job) -> dict[str, Any]:
    return {
        "enabled": job.pace,
        "pause_ms": job.pace_pause_ms if job.pace else job.pause_ms,
        "floor_ms": job.pause_ms,
        "limit": job.pace_limit if job.pace else "",
        "limit_label": job.pace_limit.replace("_", " ") if job.pace else "",
        "throttled_seconds": round(job.throttled_seconds, 1),
        # Fewer than the job's concurrency while latency has shed workers.
        "workers_writing": job.workers_writing,
        # Pausing the last worker for latency found to buy nothing: at its floor until then.
        "pause_given_up_until": (
            job.pause_given_up_until.isoformat() if job.pause_given_up_until else None
        ),
        "latency_baseline_ms": job.latency_baseline_ms,
        "budgets": asdict(job.budgets),
    }
