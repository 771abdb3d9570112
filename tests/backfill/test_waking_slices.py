"""A slice handed back to wait (held rows, a paced stop) is dispatched to arrive when its wait ends.

Without it, a job whose only open slice waits goes on at the sweeper's next
round, or never where no sweeper runs.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from backfill import conf
from backfill.engine import scheduler, service
from backfill.engine.lifecycle import Action, transition
from backfill.engine.local import LocalQueue
from backfill.engine.options import JobOptions
from backfill.engine.runner import Outcome, SliceWork
from backfill.models import Job, JobStatus, Slice, SliceStatus
from tests.data import seed

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_local_queue_gives_a_delayed_slice_only_once_its_delay_is_over():
    queue = LocalQueue()
    queue.dispatch(7, delay=0.3)
    queue.dispatch(8)
    assert queue.pop() == 8
    assert queue.pop() is None
    time.sleep(0.35)
    assert queue.pop() == 7
    assert queue.pop() is None


def only_open_slice(job: Job) -> Slice:
    first, *others = Slice.objects.filter(job=job).order_by("number")
    Slice.objects.filter(pk__in=[s.pk for s in others]).update(status=SliceStatus.DONE)
    return first


def test_the_last_open_slice_handed_back_to_wait_is_dispatched_for_when_the_wait_ends(local_queue):
    seed(500, share=0.2, existing_groups=20)
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=1))
    slc = only_open_slice(job)
    while local_queue.pop() is not None:  # what the start dispatched
        pass
    assert Slice.objects.acquire(slc.pk, "worker-1", lease_seconds=30) is not None

    before = timezone.now()
    scheduler.hand_over(slc.pk, "worker-1", job.pk, retry_in=20)

    slc.refresh_from_db()
    lease = timedelta(seconds=conf.current().lease_seconds)
    assert slc.retry_at is not None
    assert slc.retry_at >= before + timedelta(seconds=20)
    # Reserved until a worker could have taken it after the wait: the
    # sweeper does not send it again in between.
    assert slc.lease_expires_at == slc.retry_at + lease
    assert local_queue.pop() is None
    assert local_queue.later[slc.pk] - time.monotonic() == pytest.approx(20, abs=1)
    assert scheduler.advance(job.pk) == []


def test_a_free_slice_takes_the_worker_before_a_waiting_one(local_queue):
    seed(2000, share=0.2, existing_groups=20)
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=2))
    first, second = Slice.objects.filter(job=job).order_by("number")
    while local_queue.pop() is not None:
        pass
    # One worker writing (as pacing leaves it); the second slice's message was lost.
    Job.objects.filter(pk=job.pk).update(pace_workers=1)
    Slice.objects.filter(pk=second.pk).update(lease_expires_at=None)
    # The first waits on rows another transaction holds.
    Slice.objects.filter(pk=first.pk).update(held_keys=["1"])
    assert Slice.objects.acquire(first.pk, "worker-1", lease_seconds=30) is not None

    scheduler.hand_over(first.pk, "worker-1", job.pk, retry_in=20)

    assert local_queue.pop() == second.pk
    assert local_queue.later == {}


def test_a_slice_waiting_out_its_pace_keeps_its_workers_slot(local_queue):
    seed(2000, share=0.2, existing_groups=20)
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=2))
    first, second = Slice.objects.filter(job=job).order_by("number")
    while local_queue.pop() is not None:
        pass
    Job.objects.filter(pk=job.pk).update(pace_workers=1)
    Slice.objects.filter(pk=second.pk).update(lease_expires_at=None)
    assert Slice.objects.acquire(first.pk, "worker-1", lease_seconds=30) is not None

    scheduler.hand_over(first.pk, "worker-1", job.pk, retry_in=20)  # a pause of 20 s

    assert local_queue.pop() is None  # the pause is the worker's: no other slice meanwhile
    assert list(local_queue.later) == [first.pk]


def test_resume_dispatches_again_what_was_sent_before_the_pause(local_queue):
    seed(500, share=0.2, existing_groups=20)
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=1))
    sent = local_queue.pop()
    assert sent is not None
    service.pause("admin_groups", "test")
    # The message arrives while the job is paused, and goes away.
    assert SliceWork(sent, "worker-1", budget_seconds=1).run().outcome == Outcome.NOT_ACQUIRED

    service.resume("admin_groups", "test")

    assert local_queue.pop() == sent
    assert Slice.objects.get(pk=sent).lease_expires_at is not None
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_retry_dispatches_again_what_was_sent_before_the_job_failed(local_queue):
    seed(500, share=0.2, existing_groups=20)
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=1))
    sent = local_queue.pop()
    assert sent is not None
    transition(job, Action.FAIL, "test", "a batch kept failing")
    # The message arrives after the failure, and goes away.
    assert SliceWork(sent, "worker-1", budget_seconds=1).run().outcome == Outcome.NOT_ACQUIRED

    service.retry("admin_groups", "test")

    assert local_queue.pop() == sent
