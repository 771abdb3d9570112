"""Delivery under any interleaving: Hypothesis plays the workers, the broker and the operator.

Random sequences of workers taking messages and handing slices back (to go
on, or to wait out a back-off), time passing for the waiting ones, messages
lost, workers dying, pauses and resumes, and the sweeper once leases have
expired, against the real scheduler, leases and database, with the
in-process queue as the broker. After every step: no slice is held by two
workers, and a running job with no slice in a worker's hands has a message
on its way (now, or for when a wait ends) unless a message or a worker was
lost, which only the sweeper recovers.
"""

from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from backfill import conf
from backfill.engine import dispatch, scheduler, service
from backfill.engine.local import LocalQueue
from backfill.engine.options import JobOptions
from backfill.models import Job, JobStatus, Slice
from tests.data import seed

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS = st.sampled_from(["worker-1", "worker-2"])
WAIT_SECONDS = 30.0


class Delivery(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stack = ExitStack()
        self.queue = LocalQueue()
        self.stack.enter_context(dispatch.using(self.queue))
        Job.objects.all().delete()
        self.job = service.start("admin_groups", "test", JobOptions.build(concurrency=2))
        self.holding: dict[str, int | None] = {"worker-1": None, "worker-2": None}
        self.lost = False

    def teardown(self) -> None:
        self.stack.close()
        Job.objects.all().delete()

    def status(self) -> str:
        return Job.objects.values_list("status", flat=True).get(pk=self.job.pk)

    @rule(worker=WORKERS)
    def take_a_message(self, worker: str) -> None:
        if self.holding[worker] is not None:
            return
        slice_id = self.queue.pop()
        if slice_id is None:
            return
        lease = conf.current().lease_seconds
        if Slice.objects.acquire(slice_id, worker, lease) is not None:
            self.holding[worker] = slice_id

    @rule(worker=WORKERS, wait=st.booleans())
    def hand_back(self, worker: str, wait: bool) -> None:
        slice_id = self.holding[worker]
        if slice_id is None:
            return
        self.holding[worker] = None
        scheduler.hand_over(slice_id, worker, self.job.pk, WAIT_SECONDS if wait else None)

    @rule()
    def waits_end(self) -> None:
        """The waiting slices' time passes (their reservations' with it)."""
        gone = timedelta(seconds=WAIT_SECONDS)
        Slice.objects.filter(job=self.job, retry_at__isnull=False).update(
            retry_at=F("retry_at") - gone,
            lease_expires_at=F("lease_expires_at") - gone,
        )
        for slice_id in self.queue.later:
            self.queue.later[slice_id] -= WAIT_SECONDS

    @rule()
    def lose_a_message(self) -> None:
        if self.queue.queue:
            self.queue.queue.popleft()
            self.lost = True

    @rule(worker=WORKERS)
    def worker_dies(self, worker: str) -> None:
        if self.holding[worker] is not None:
            self.holding[worker] = None
            self.lost = True

    @rule()
    def pause(self) -> None:
        if self.status() == JobStatus.RUNNING:
            service.pause("admin_groups", "test")

    @rule()
    def resume(self) -> None:
        if self.status() == JobStatus.PAUSED:
            service.resume("admin_groups", "test")

    @rule()
    def sweep_once_leases_expire(self) -> None:
        """Every lease runs out (a worker still holding one has stalled: it is
        lost too), then the sweeper runs."""
        past = timezone.now() - timedelta(seconds=1)
        Slice.objects.filter(job=self.job, lease_expires_at__isnull=False).update(
            lease_expires_at=past
        )
        self.holding = dict.fromkeys(self.holding)
        service.reconcile()
        self.lost = False

    @invariant()
    def no_slice_has_two_workers(self) -> None:
        held = [s for s in self.holding.values() if s is not None]
        assert len(held) == len(set(held))

    @invariant()
    def a_running_job_always_has_a_slice_on_its_way(self) -> None:
        if self.lost or any(self.holding.values()) or self.status() != JobStatus.RUNNING:
            return
        assert self.queue.queue or self.queue.later, (
            "the job is running, no worker holds a slice and no message is on its way: "
            "it waits for the sweeper"
        )


def test_delivery_under_any_interleaving():
    seed(2000, share=0.2, existing_groups=20)
    run_state_machine_as_test(
        Delivery,
        settings=settings(
            max_examples=200,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
