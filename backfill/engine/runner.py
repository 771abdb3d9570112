"""A slice is worked batch after batch, for a bounded time, by one owner.

The loop around the batch transactions: take the lease, pick the batch for
the job's phase (fill while running, undo while reverting), size it, back off
and count failures, stop when the job stops. It returns what happened; the
caller (the Celery task, the in-process driver) releases the lease and asks
the scheduler for what comes next, so this layer never calls up into
scheduling.
"""

import enum
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connection, reset_queries
from django.db.models import F

from backfill import conf
from backfill.conf import BatchLimits
from backfill.engine import revert
from backfill.engine.batch import BatchResult, run_batch
from backfill.engine.lifecycle import Action, transition
from backfill.engine.throttle import BatchSizer, backoff_seconds
from backfill.errors import InvalidTransition
from backfill.faults import Failure, Fault, classify, describe
from backfill.models import Job, JobStatus, Slice, SliceStatus
from backfill.pacing.controller import STOPPING, SpeedLimit
from backfill.pacing.pacer import Pacer
from backfill.querysets import LeaseLost
from backfill.registry import Definition, get_definition

logger = logging.getLogger(__name__)

Log = logging.LoggerAdapter[logging.Logger]

# A pause at least this long is not slept holding the slice: after its batch
# the slice is handed back, to be taken again when the pause is over.
LONG_PAUSE_MS = 1000

# When a batch of each job last had sessions waiting on it, in this process
# (monotonic seconds), and the size it chose last: a worker's next tasks of
# the job remember both.
last_waited: dict[int, float] = {}
last_size: dict[int, int] = {}
# When an expression's batch of each job last met a row held by
# someone else, in this process, and fell back to locking first: for
# `lock_first_seconds` after, the job's batches here lock first.
last_fallback: dict[int, float] = {}


class Outcome(enum.StrEnum):
    CONTINUED = "continued"  # time budget used; hand over to a continuation
    FINISHED = "finished"  # the slice is done
    STOPPED = "stopped"  # the job left the phase the slice was taken in
    FAILED = "failed"  # the slice ran out of attempts
    WAITING = "waiting"  # only rows another transaction holds are left: back off
    PACED = "paced"  # the database's health asks for a long pause: hand over until then
    SHED = "shed"  # latency sheds a worker: this one hands its slice back
    NOT_ACQUIRED = "not_acquired"  # duplicate delivery, or nothing to do


@dataclass(frozen=True)
class SliceRun:
    outcome: Outcome
    job_id: int | None = None
    # Seconds before the slice should be taken again (it waits on held rows).
    retry_in: float | None = None

    @property
    def owns_lease(self) -> bool:
        """Whether the caller must release the lease and hand over."""
        return self.outcome != Outcome.NOT_ACQUIRED


@dataclass
class SliceWork:
    """The state of one owner working one slice."""

    slice_id: int
    owner: str
    budget_seconds: float
    limits: BatchLimits = field(default_factory=BatchLimits.from_settings)
    # True from taking the lease until the first batch ends: that attempt is counted.
    attempt_counted: bool = False
    retry_in: float | None = None

    def run(self) -> SliceRun:
        slc = Slice.objects.acquire(self.slice_id, self.owner, conf.current().lease_seconds)
        if slc is None:
            return SliceRun(Outcome.NOT_ACQUIRED)
        self.attempt_counted = True
        log = logging.LoggerAdapter(logger, {"job": slc.job_id, "slice": slc.number})
        if slc.attempts > self.limits.max_attempts:
            log.error("job %s slice %s: gave up after %s deliveries", *ids(slc), slc.attempts)
            self.fail(Failure("the worker died during every attempt"), log)
            return SliceRun(Outcome.FAILED, slc.job_id)
        try:
            outcome = self.loop(slc, log)
        except LeaseLost:
            log.warning("job %s slice %s: lease lost", *ids(slc))
            return SliceRun(Outcome.NOT_ACQUIRED, slc.job_id)
        retry_in = self.retry_in if outcome in {Outcome.WAITING, Outcome.PACED} else None
        return SliceRun(outcome, slc.job_id, retry_in)

    def loop(self, slc: Slice, log: Log) -> Outcome:
        pacer = Pacer.for_job(slc.job, get_definition(slc.job.definition).table, self.limits)
        try:
            return self.batches(slc, pacer, log)
        finally:
            pacer.close()

    def batches(self, slc: Slice, pacer: Pacer, log: Log) -> Outcome:
        phase = slc.job.status
        batch = self.batch_for(slc.job, pacer)
        sizer = BatchSizer(self.limits)
        size = sizer.clamp(self.first_size(slc))
        deadline = time.monotonic() + self.budget_seconds
        paced = phase == JobStatus.RUNNING
        while time.monotonic() < deadline:
            # With DEBUG on, Django keeps the last 9,000 statements with their
            # parameters (a batch's names) and only a web request clears them.
            reset_queries()
            try:
                # Inside the try: a connection lost while idle fails here first.
                if Job.objects.values_list("status", flat=True).get(pk=slc.job_id) != phase:
                    return Outcome.STOPPED
                pace = pacer.current() if paced else SpeedLimit()
                if pacer.shed:
                    log.info("job %s slice %s: one worker fewer for latency", *ids(slc))
                    self.give_back_attempt()
                    return Outcome.SHED
                if stops(pace, pacer):
                    return self.hand_back_for(pace, pacer, log)
                ran = min(size, pace.batch_cap or size)
                result = batch(ran)
            except LeaseLost:
                raise
            except Exception as exc:
                if classify(exc) == Fault.LOCK_TIMEOUT:
                    # Locking first timed out too (a table lock, say): writing
                    # first again on the retry would only meet the same wait.
                    last_fallback[slc.job_id] = time.monotonic()
                size = self.after_failure(exc, size, sizer, log)
                if size == 0:
                    return Outcome.FAILED
                continue
            self.attempt_counted = False
            log.debug(
                "job %s slice %s: %s rows in %.3fs (size %s)",
                *ids(slc),
                result.rows_changed,
                result.seconds,
                size,
            )
            if result.fell_back:
                last_fallback[slc.job_id] = time.monotonic()
            if result.slice_done:
                return Outcome.FINISHED
            if result.waiting:
                log.info("job %s slice %s: waiting on rows another transaction holds", *ids(slc))
                self.retry_in = backoff_seconds(self.limits, result.held_tries)
                return Outcome.WAITING
            # From the size that ran: its time says nothing of an uncapped one.
            size = self.next_size(sizer, slc.job_id, ran, result)
            if result.new_pass:
                time.sleep(backoff_seconds(self.limits, 1))
            if pace.pause_ms >= LONG_PAUSE_MS:
                return self.hand_back_for(pace, pacer, log)
            if pace.pause_ms:
                time.sleep(pace.pause_ms / 1000)
                pacer.waited(pace.pause_ms / 1000)
        return Outcome.CONTINUED

    def first_size(self, slc: Slice) -> int:
        """A slice keeps its size; a fresh one starts at the size this process
        last used for the job, not at the job's first size again."""
        return slc.batch_size if slc.batches else last_size.get(slc.job_id, slc.batch_size)

    def next_size(self, sizer: BatchSizer, job_id: int, size: int, result: BatchResult) -> int:
        """Short batches while sessions wait on the job's batches, longer ones
        once nobody has for `calm_seconds`."""
        now = time.monotonic()
        if result.waiters:
            last_waited[job_id] = now
            last_size[job_id] = sizer.after_waiters(size, result.seconds)
            return last_size[job_id]
        calm = now - last_waited.get(job_id, -math.inf) >= self.limits.calm_seconds
        last_size[job_id] = sizer.next_size(size, result.rows_selected, result.seconds, calm)
        return last_size[job_id]

    def hand_back_for(self, pace: SpeedLimit, pacer: Pacer, log: Log) -> Outcome:
        """Wait out a long pause holding nothing: the slice is handed back, to be
        taken again when the pause is over."""
        log.info("job %s slice %s: paced by %s", *log_ids(log), pace.limit or "its pause")
        self.retry_in = pace.pause_ms / 1000
        pacer.waited(self.retry_in, ahead=True)
        self.give_back_attempt()
        return Outcome.PACED

    def give_back_attempt(self) -> None:
        """A delivery handed back before any batch did not fail: it must not count
        toward the attempts that fail a slice whose worker keeps dying."""
        if self.attempt_counted:
            Slice.objects.filter(pk=self.slice_id, lease_owner=self.owner, attempts__gt=0).update(
                attempts=F("attempts") - 1
            )
            self.attempt_counted = False

    def batch_for(self, job: Job, pacer: Pacer) -> Callable[[int], BatchResult]:
        """The batch this phase runs: fill while running, undo while reverting."""
        definition: Definition = get_definition(job.definition)
        if job.status == JobStatus.REVERTING:
            return lambda size: revert.run_revert_batch(
                definition, job.context, self.slice_id, self.owner, size, self.limits
            )
        return lambda size: run_batch(
            definition,
            self.slice_id,
            self.owner,
            size,
            self.limits,
            pacer.pace,
            lock_first=not self.may_write_first(job.pk),
        )

    def may_write_first(self, job_id: int) -> bool:
        """No batch of the job in this process met a held row for
        `lock_first_seconds`: writing before locking is likely to pay."""
        met = last_fallback.get(job_id, -math.inf)
        return time.monotonic() - met >= self.limits.lock_first_seconds

    def after_failure(self, exc: Exception, size: int, sizer: BatchSizer, log: Log) -> int:
        """Record the failure and back off; the next size, or 0 when the slice failed.

        Waiting on the app's locks is contention, not a fault: the batch is
        retried at half the size (fewer rows for the app to queue behind) and
        spends none of the slice's attempts, only its budget of lock timeouts.
        """
        connection.close_if_unusable_or_obsolete()
        log.warning("job %s slice %s: batch failed: %s", *log_ids(log), describe(exc))
        fault = classify(exc)
        next_size = sizer.after_timeout(size) if fault != Fault.ERROR else size
        failure = Failure.of(exc, self.attempt_counted, next_size)
        self.attempt_counted = False
        try:
            recorded = self.fail(failure, log)
        except DatabaseError as record_exc:
            connection.close_if_unusable_or_obsolete()
            log.warning("job %s slice %s: could not record failure: %s", *log_ids(log), record_exc)
            time.sleep(backoff_seconds(self.limits, 1))
            return next_size
        if recorded.status == SliceStatus.FAILED:
            return 0
        tries = recorded.lock_timeouts if failure.lock_timeout else recorded.attempts
        time.sleep(backoff_seconds(self.limits, tries))
        return next_size

    def fail(self, failure: Failure, log: Log) -> Slice:
        """Count the failure on the slice; fail the job when the slice is out of budget."""
        slc = Slice.objects.record_failure(self.slice_id, self.owner, failure, self.limits)
        if slc.status == SliceStatus.FAILED:
            try:
                transition(slc.job_id, Action.FAIL, "worker", slc.failure_summary(self.limits))
            except InvalidTransition as exc:
                # Cancelling, or already failed by another slice: nothing to add.
                log.info("job %s slice %s: %s", *ids(slc), exc)
        return slc


def stops(pace: SpeedLimit, pacer: Pacer) -> bool:
    """Whether a signal stops the job: no batch until it clears.

    Any other long pause is waited between batches, so every pause, however
    long, is followed by a batch: the job's own `pause_ms` of a minute still
    fills a batch a minute.
    """
    controller = pacer.controller
    return (
        controller is not None
        and pace.limit in STOPPING
        and pace.pause_ms >= max(LONG_PAUSE_MS, controller.ceiling_ms)
    )


def ids(slc: Slice) -> tuple[int, int]:
    return slc.job_id, slc.number


def log_ids(log: Log) -> tuple[Any, Any]:
    extra = log.extra or {}
    return extra.get("job"), extra.get("slice")


def work_slice(slice_id: int, owner: str, budget_seconds: float | None = None) -> SliceRun:
    """Entry point for workers: work one slice for a bounded time."""
    budget = budget_seconds if budget_seconds is not None else conf.current().task_seconds
    return SliceWork(slice_id, owner, budget).run()
