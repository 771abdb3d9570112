"""Work a job in this process: `run --sync`, `revert --sync`, inline finishes, tests.

The local queue stands in for the broker; `drive` plays the Celery worker and
the sweeper at once: it works each dispatched slice for a short step, hands it
over like the task does, and asks the scheduler again when the queue is empty.
"""

import os
import time
from collections import deque
from collections.abc import Callable

from backfill.engine import scheduler
from backfill.engine.runner import SliceRun, work_slice
from backfill.models import Job
from backfill.statuses import WORKING_STATUSES, JobStatus

# How long to wait for a lease another process holds (or a cancel to settle).
IDLE_SECONDS = 0.2


class LocalQueue:
    """Slices queued in memory, worked by the same process."""

    def __init__(self) -> None:
        self.queue: deque[int] = deque()
        self.later: dict[int, float] = {}  # slice: monotonic time it may be worked from

    def check(self) -> None:
        """Always ready: this process works the slices itself."""

    def dispatch(self, slice_id: int, delay: float = 0.0) -> None:
        if delay > 0:
            self.later[slice_id] = time.monotonic() + delay
        elif slice_id not in self.queue:
            self.queue.append(slice_id)

    def pop(self) -> int | None:
        now = time.monotonic()
        for slice_id, due in sorted(self.later.items(), key=lambda item: item[1]):
            if due <= now:
                del self.later[slice_id]
                self.dispatch(slice_id)
        return self.queue.popleft() if self.queue else None


def default_owner() -> str:
    return f"sync-{os.getpid()}"


def drive(
    job_id: int,
    queue: LocalQueue,
    owner: str | None = None,
    step_seconds: float = 1.0,
    on_progress: Callable[[Job], None] | None = None,
) -> Job:
    """Work the job's slices here until it stops working (done, failed, paused...).

    The queue must be the dispatcher in use (`dispatch.using(queue)`).
    """
    owner = owner or default_owner()
    while True:
        slice_id = queue.pop()
        if slice_id is None:
            scheduler.advance(job_id)
            slice_id = queue.pop()
        job = Job.objects.get(pk=job_id)
        if on_progress:
            on_progress(job)
        if job.status not in (*WORKING_STATUSES, JobStatus.CANCELLING):
            return job
        if slice_id is None:
            time.sleep(IDLE_SECONDS)
            continue
        step(slice_id, owner, step_seconds)


def step(slice_id: int, owner: str, seconds: float) -> SliceRun:
    """Work one slice for `seconds`, then hand it over, as the Celery task does."""
    run = work_slice(slice_id, owner, seconds)
    if run.owns_lease and run.job_id is not None:
        scheduler.hand_over(slice_id, owner, run.job_id, run.retry_in)
    return run
