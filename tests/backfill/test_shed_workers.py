"""Over its latency budget a job writes with fewer workers before it pauses the last one."""

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from backfill.conf import BatchLimits
from backfill.engine import scheduler, service
from backfill.engine.options import JobOptions
from backfill.engine.runner import Outcome, SliceWork
from backfill.models import Job, JobStatus, Slice
from backfill.pacing import health, pacer
from backfill.pacing.controller import CALM_READINGS_TO_ADD_WORKER, LATENCY, SpeedLimit
from backfill.registry import get_definition
from tests.data import seed

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def commits_take(monkeypatch) -> Callable[[float], None]:
    """What the probe beside the batches times, as the app's load would make it."""

    def set_latency(ms: float) -> None:
        monkeypatch.setattr(health.LatencyProbe, "reading", lambda self: ms)

    return set_latency


@pytest.fixture
def paced_job(settings, local_queue) -> Job:
    settings.BACKFILL_PACE_INTERVAL_SECONDS = 0
    seed(2000, share=0.2, existing_groups=20)
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=2, pace=True))
    Job.objects.filter(pk=job.pk).update(latency_baseline_ms=1.0)
    return job


def work(slc: Slice, owner: str, seconds: float = 0.5) -> Outcome:
    run = SliceWork(slc.pk, owner, budget_seconds=seconds).run()
    if run.owns_lease:
        scheduler.hand_over(slc.pk, owner, slc.job_id, run.retry_in)
    return run.outcome


def in_flight(job: Job) -> int:
    return Slice.objects.filter(job=job).open().in_flight(timezone.now()).count()


def test_one_worker_steps_back_and_the_last_one_is_paced_instead(paced_job, commits_take):
    commits_take(5.0)  # 5x the baseline, over a 2x budget
    first, second = Slice.objects.filter(job=paced_job).order_by("number")[:2]
    assert work(first, "worker-1") == Outcome.SHED
    paced_job.refresh_from_db()
    assert paced_job.workers_writing == 1
    assert Slice.objects.get(pk=first.pk).attempts == 0  # stepping back is not a failure
    # The second worker is the last: it writes on, paced.
    assert work(second, "worker-2") in {Outcome.CONTINUED, Outcome.FINISHED}
    paced_job.refresh_from_db()
    assert paced_job.workers_writing == 1
    assert (paced_job.pace_limit, paced_job.pace_pause_ms > 0) == ("latency", True)
    assert Slice.objects.get(pk=second.pk).rows_done > 0


def test_the_scheduler_keeps_no_more_slices_in_flight_than_workers_writing(paced_job):
    Slice.objects.filter(job=paced_job).update(lease_owner="", lease_expires_at=None)
    Job.objects.filter(pk=paced_job.pk).update(pace_workers=1)
    assert len(scheduler.advance(paced_job.pk)) == 1
    assert scheduler.advance(paced_job.pk) == []
    assert in_flight(paced_job) == 1


def test_a_worker_comes_back_once_the_room_lasts(settings, paced_job, commits_take):
    """A reading before every batch: the worker comes back after that many batches, not one."""
    settings.BACKFILL_MIN_BATCH_SIZE = settings.BACKFILL_MAX_BATCH_SIZE = 10
    Job.objects.filter(pk=paced_job.pk).update(pace_workers=1)
    commits_take(0.2)  # well under the baseline: plenty of room
    slc = Slice.objects.filter(job=paced_job).order_by("number").first()
    assert slc is not None
    work(slc, "worker-1", seconds=10)
    slc.refresh_from_db()
    # One reading before each batch; the last reading brought the worker back.
    assert slc.rows_done >= 10 * (CALM_READINGS_TO_ADD_WORKER - 1)
    assert Job.objects.get(pk=paced_job.pk).workers_writing == 2


def test_resuming_gives_the_job_every_worker_again(paced_job):
    Job.objects.filter(pk=paced_job.pk).update(
        pace_workers=1, pause_given_up_until=timezone.now() + timedelta(minutes=5)
    )
    service.pause("admin_groups", "test")
    service.resume("admin_groups", "test")
    resumed = Job.objects.get(pk=paced_job.pk)
    assert resumed.workers_writing == 2
    assert resumed.pause_given_up_until is None  # pausing is weighed afresh


def test_retrying_weighs_the_pause_afresh(paced_job):
    Job.objects.filter(pk=paced_job.pk).update(
        status=JobStatus.FAILED,
        pace_workers=1,
        pause_given_up_until=timezone.now() + timedelta(minutes=5),
    )
    service.retry("admin_groups", "test")
    retried = Job.objects.get(pk=paced_job.pk)
    assert retried.status == JobStatus.RUNNING
    assert (retried.workers_writing, retried.pause_given_up_until) == (2, None)


def test_a_verdict_reached_before_resuming_does_not_outlive_it(paced_job):
    """A worker still closing a task from before the pause saves after `resume`
    gave the job every worker and the pause back: what it learned was weighed
    against the old baseline, and must not undo that."""
    table = get_definition("admin_groups").table
    before = pacer.Pacer.for_job(paced_job, table, BatchLimits.from_settings())
    before.given_up_until = timezone.now() + timedelta(minutes=5)
    before.waited(2.0)  # pacing is the whole pause: the floor is 0
    service.pause("admin_groups", "test")
    service.resume("admin_groups", "test")
    before.pace = SpeedLimit(before.pace.pause_ms + 100, None, LATENCY)
    assert not before.shed_worker(SpeedLimit(before.pace.pause_ms - 100))
    before.save()
    resumed = Job.objects.get(pk=paced_job.pk)
    assert resumed.latency_baseline_ms != before.baseline_ms  # a new baseline
    assert (resumed.workers_writing, resumed.pause_given_up_until) == (2, None)
    assert resumed.throttled_seconds == 2.0  # the time it spent is still shown


def test_a_revert_after_workers_were_shed_runs_with_all_of_them(paced_job, drain):
    drain(paced_job)
    Job.objects.filter(pk=paced_job.pk).update(pace_workers=1)
    reverting = service.revert("admin_groups", "test")
    assert reverting.status == JobStatus.REVERTING
    assert reverting.workers_writing == 2
    assert in_flight(reverting) == 2


def test_the_last_worker_goes_back_to_its_floor_when_pausing_buys_nothing(
    settings, paced_job, commits_take
):
    """The app's commits as slow paused as unpaced: a flat frontier, as on a database
    whose CPUs the batches keep busy. The pause is tried, weighed against readings at
    the floor, and given up; the job is still shown limited by latency."""
    flat_frontier(settings, paced_job, commits_take)
    pauses: list[int] = []
    for _ in range(80):
        last = Slice.objects.filter(job=paced_job).open().order_by("number").first()
        assert last is not None, "the job ran out of rows before giving the pause up"
        work(last, "worker-1", seconds=0.2)
        paced_job.refresh_from_db()
        pauses.append(paced_job.pace_pause_ms)
        if pacer.pause_evidence(paced_job).resting:
            break
    assert max(pauses) > 0  # it did try pausing
    assert pacer.pause_evidence(paced_job).resting > 0
    assert (paced_job.pace_limit, paced_job.pace_pause_ms) == ("latency", 0)
    assert paced_job.pause_given_up_until is not None
    assert paced_job.pause_given_up_until > timezone.now()  # for the job's other workers


def test_a_worker_process_new_to_the_job_rests_as_the_one_that_gave_the_pause_up(
    settings, paced_job, commits_take
):
    """The slice moves between worker processes as tasks hand over: one that has not
    read the evidence itself takes the verdict from the job's row, not a dozen readings
    of pausing to learn it again."""
    flat_frontier(settings, paced_job, commits_take)
    until = timezone.now() + timedelta(minutes=5)
    Job.objects.filter(pk=paced_job.pk).update(pause_given_up_until=until)
    pauses: list[int] = []
    for _ in range(5):
        last = Slice.objects.filter(job=paced_job).open().order_by("number").first()
        assert last is not None
        work(last, "worker-2", seconds=0.2)
        paced_job.refresh_from_db()
        pauses.append(paced_job.pace_pause_ms)
    assert pauses == [0] * 5
    assert paced_job.pace_limit == "latency"
    assert pacer.pause_evidence(paced_job).resting > 0
    assert not pacer.pause_evidence(paced_job).paused  # it never paused to find out


def flat_frontier(settings, job: Job, commits_take: Callable[[float], None]) -> None:
    """One worker writing, small batches for many readings, the app's commits over
    budget whatever the pause; a worker process new to the job."""
    settings.BACKFILL_PACE_INTERVAL_SECONDS = 0.01  # a reading every few batches
    settings.BACKFILL_MAX_PACE_PAUSE_MS = 40
    settings.BACKFILL_BATCH_SIZE = settings.BACKFILL_MIN_BATCH_SIZE = 10
    settings.BACKFILL_MAX_BATCH_SIZE = 20
    commits_take(5.0)
    Job.objects.filter(pk=job.pk).update(pace_workers=1)
    pacer._pause_evidence.pop(job.pk, None)
