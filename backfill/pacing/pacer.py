"""A worker's side of pacing: when to read the signals, and what the job's row shows.

The controller (controller.py) decides; this reads the database's health at most
every BACKFILL_PACE_INTERVAL_SECONDS (and before a task's first batch, so a
job stopped by a signal looks before it writes), keeps the job's row up to
date for people (the pause, the signal limiting it, seconds throttled) and
carries the pace from one task of the job to the next through that row (time
throttled counts the wall time once, however many slices wait at once). Each
worker steers on its own readings: like TCP's senders, they share the room
without talking to each other. While a paced task runs, a `LatencyProbe`
times commits beside its batches; it is stopped when the task ends.

What pausing the last worker has bought (PauseEvidence) is kept per
worker process and job, across the job's tasks: it takes some readings to
judge, and a task may end first. Once a worker gives the pause up, the
verdict goes on the job's row (`pause_given_up_until`) for the time it
rests: the slice moves between worker processes as tasks hand over, and
each learning it again would pause for a dozen readings.

Shedding a worker for latency (sheds_worker) goes through the job's
row too: `pace_workers` is lowered, the worker hands its slice back
(`shed`), and the scheduler dispatches no more slices than that until a
worker with plenty of room raises it again; the next hand-over or sweep
then brings the worker back.
"""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from backfill import conf
from backfill.conf import BatchLimits, Budgets
from backfill.models import Job
from backfill.pacing import health
from backfill.pacing.controller import (
    CALM_READINGS_TO_ADD_WORKER,
    Controller,
    PauseEvidence,
    Signals,
    SpeedLimit,
    adds_worker,
    room_is_plenty,
    sheds_worker,
)

logger = logging.getLogger(__name__)

# How long a closing task keeps trying to show its last pace on a held job row.
CLOSING_SAVE_TRIES = 20
CLOSING_SAVE_PAUSE_SECONDS = 0.05

# Job id -> the latency baseline its readings were weighed against, and what
# pausing its last worker has bought, as this process read it.
_pause_evidence: dict[int, tuple[float | None, PauseEvidence]] = {}
# The signals this process has said it cannot read (said once, not at every reading).
_unreadable_reported: set[str] = set()


def pause_evidence(job: Job) -> PauseEvidence:
    """This process's evidence for `job`, afresh once the job has a new baseline:
    resuming or retrying takes one, and pressures read against another baseline
    (and under the app's load of another hour) are not comparable."""
    baseline, evidence = _pause_evidence.get(job.pk, (None, None))
    if evidence is None or baseline != job.latency_baseline_ms:
        evidence = PauseEvidence()
        _pause_evidence[job.pk] = (job.latency_baseline_ms, evidence)
    return evidence


@dataclass
class Pacer:
    job_id: int
    table: str
    controller: Controller | None  # None: pacing is off for this job
    budgets: Budgets
    baseline_ms: float | None
    pace: SpeedLimit
    interval: float
    next_read: float = 0.0
    # Waits beyond the floor (start, end), not yet added to the job's row.
    throttled: list[tuple[datetime, datetime]] = field(default_factory=list)
    probe: health.LatencyProbe | None = field(default=None, repr=False)
    calm_readings: int = 0  # readings in a row with plenty of room
    shed: bool = False  # this worker stepped back for latency: hand the slice back
    evidence: PauseEvidence = field(default_factory=PauseEvidence, repr=False)
    given_up_until: datetime | None = None  # not yet shown on the job's row

    @classmethod
    def for_job(cls, job: Job, table: str, limits: BatchLimits) -> "Pacer":
        floor = job.pause_ms
        controller = None
        if job.pace:
            ceiling = max(floor, conf.current().max_pace_pause_ms)
            controller = Controller(floor, ceiling, limits.min_size, limits.max_size)
        interval = conf.current().pace_interval_seconds
        evidence = pause_evidence(job)
        evidence.rest_at_least(readings_until(job.pause_given_up_until, interval))
        return cls(
            job_id=job.pk,
            table=table,
            controller=controller,
            budgets=job.budgets,
            baseline_ms=job.latency_baseline_ms,
            pace=SpeedLimit(
                max(floor, job.pace_pause_ms) if job.pace else floor, None, job.pace_limit
            ),
            interval=interval,
            evidence=evidence,
        )

    def current(self) -> SpeedLimit:
        """The pace for the next batch, from fresh signals when they are due."""
        now = time.monotonic()
        if self.controller is None or now < self.next_read:
            return self.pace
        self.next_read = now + self.interval
        if self.probe is None:
            self.probe = health.LatencyProbe()
            self.probe.start()
        latency = self.probe.reading()
        signals = replace(health.read(self.table, latency), baseline_ms=self.baseline_ms)
        report_unreadable(self.job_id, signals)
        previous = self.pace
        floor = self.controller.floor_ms
        self.evidence.observe(previous, floor, signals, self.budgets)
        self.pace = self.controller.next(previous, signals, self.budgets)
        if self.pace.pause_ms > previous.pause_ms and self.shed_worker(previous):
            self.probe.forget()
            self.pace = previous  # the workers left go on at their pace
            return self.pace
        resting = self.evidence.resting
        self.pace = self.evidence.last_worker_pace(self.pace, floor)
        if self.pace.pause_ms > previous.pause_ms:
            self.probe.forget()  # the next reading is of the new pace alone
        if self.evidence.resting > resting:
            logger.info(
                "job %s: pausing did not lower the latency; at %s ms for %s readings",
                self.job_id,
                floor,
                self.evidence.resting,
            )
            rest = timedelta(seconds=self.evidence.resting * self.interval)
            self.given_up_until = timezone.now() + rest
        self.take_back_worker(signals)
        if self.pace.limit != previous.limit:
            logger.info(
                "job %s: pace %s ms, limited by %s (%s)",
                self.job_id,
                self.pace.pause_ms,
                self.pace.limit or "nothing",
                signals,
            )
        self.save()
        return self.pace

    def shed_worker(self, previous: SpeedLimit) -> bool:
        """Lower the workers the job may have writing, this one leaving, if the rule says so."""

        def shed(job: Job) -> dict[str, object] | None:
            if not self.shares_baseline_with(job):
                return None
            if not sheds_worker(previous, self.pace, job.workers_writing):
                return None
            return {"pace_workers": job.workers_writing - 1}

        self.shed = self.update_free_row(shed)
        if self.shed:
            logger.info("job %s: one worker fewer for latency", self.job_id)
        return self.shed

    def take_back_worker(self, signals: Signals) -> None:
        """After readings in a row with plenty of room, let one more worker write."""
        plenty = room_is_plenty(signals, self.budgets)
        self.calm_readings = self.calm_readings + 1 if plenty else 0
        if self.calm_readings < CALM_READINGS_TO_ADD_WORKER:
            return

        def add(job: Job) -> dict[str, object] | None:
            if not self.shares_baseline_with(job):
                return None
            writing = job.workers_writing
            if not adds_worker(self.calm_readings, writing, job.concurrency):
                return None
            return {"pace_workers": None if writing + 1 >= job.concurrency else writing + 1}

        if self.update_free_row(add):
            logger.info("job %s: one worker more, the room has lasted", self.job_id)
        self.calm_readings = 0

    def update_free_row(self, change: Callable[[Job], dict[str, object] | None]) -> bool:
        """Apply the fields `change` returns for the job's row, unless someone holds the
        row right now (see `save`) or `change` returns nothing."""
        with transaction.atomic():
            job = (
                Job.objects.select_for_update(no_key=True, skip_locked=True)
                .filter(pk=self.job_id)
                .only("concurrency", "pace_workers", "latency_baseline_ms", "throttled_until")
                .first()
            )
            fields = change(job) if job is not None else None
            if not fields:
                return False
            Job.objects.filter(pk=self.job_id).update(**fields)
        return True

    def shares_baseline_with(self, job: Job) -> bool:
        """Whether this worker's readings are weighed against the job's baseline now.

        Resuming or retrying takes a new baseline and gives the job every worker
        and the pause back; a worker still closing a task from before must not
        undo that with a verdict reached against the old one.
        """
        return job.latency_baseline_ms == self.baseline_ms

    def waited(self, seconds: float, ahead: bool = False) -> None:
        """Seconds spent waiting for the pace, beyond the job's own pause: just
        slept, or (`ahead`) about to be waited by a slice handed back until then."""
        floor = self.controller.floor_ms / 1000 if self.controller else seconds
        beyond = timedelta(seconds=max(0.0, seconds - floor))
        if not beyond:
            return
        now = timezone.now()
        end = now + timedelta(seconds=seconds) if ahead else now
        self.throttled.append((end - beyond, end))

    def close(self) -> None:
        """Stop the probe (and close its connection) and show the last pace.

        The task ends here, and with it the seconds throttled not shown yet:
        while the scheduler holds the job's row, the save is tried again for a
        moment (this worker's batch has committed, so nothing it holds is
        what the scheduler waits for).
        """
        if self.probe is not None:
            self.probe.stop()
            self.probe = None
        for _ in range(CLOSING_SAVE_TRIES):
            if self.save():
                return
            time.sleep(CLOSING_SAVE_PAUSE_SECONDS)

    def save(self) -> bool:
        """Show the pace on the job's row, unless someone holds the row right now;
        whether there was nothing to show or it was shown.

        The scheduler holds it while it splits a share, waiting for that
        share's batch: a worker must never queue behind that, so the row is
        skipped when locked and the seconds throttled wait for the next save.
        With pacing off there is nothing to show.
        """
        if self.controller is None:
            return True

        def shown(job: Job) -> dict[str, object]:
            seconds, until = wall_seconds(self.throttled, job.throttled_until)
            fields: dict[str, object] = {
                "pace_pause_ms": self.pace.pause_ms,
                "pace_limit": self.pace.limit,
                "throttled_seconds": F("throttled_seconds") + seconds,
                "throttled_until": until,
            }
            if self.given_up_until is not None and self.shares_baseline_with(job):
                fields["pause_given_up_until"] = self.given_up_until
            return fields

        if not self.update_free_row(shown):
            return False
        self.throttled = []
        self.given_up_until = None
        return True


def report_unreadable(job_id: int, signals: Signals) -> None:
    """Say once per process which signals this role cannot read, and why: a
    signal read as quiet only because it is hidden would otherwise pass unseen."""
    for name in signals.unreadable:
        if name not in _unreadable_reported:
            _unreadable_reported.add(name)
            logger.warning(
                "job %s: cannot read %s: %s (docs/runbook.md); pacing goes by the signals it can read",
                job_id,
                name,
                health.NEEDS_STATS,
            )


def wall_seconds(
    spans: list[tuple[datetime, datetime]], counted_until: datetime | None
) -> tuple[float, datetime | None]:
    """The seconds of `spans` not yet counted, and the new end of what is counted.

    Slices of a job wait at the same time (a stop hands every one back):
    the job was held back for the wall time, once, not once per slice.
    """
    seconds = 0.0
    for start, end in sorted(spans):
        begin = start if counted_until is None else max(start, counted_until)
        if end > begin:
            seconds += (end - begin).total_seconds()
            counted_until = end
    return seconds, counted_until


def readings_until(moment: datetime | None, interval: float) -> int:
    """The readings, one per `interval` seconds, from now until `moment`."""
    if moment is None:
        return 0
    seconds = (moment - timezone.now()).total_seconds()
    return max(0, math.ceil(seconds / interval)) if interval > 0 else 0
