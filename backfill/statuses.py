"""The statuses of jobs and slices, apart from the models so querysets can use them."""

from django.db import models


class JobStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    REVERTING = "reverting"
    REVERTED = "reverted"


# A definition may have at most one job in these states (a database constraint):
# a revert in progress counts, since a new job's groups would look like its own.
ACTIVE_STATUSES = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.PAUSED,
    JobStatus.CANCELLING,
    JobStatus.REVERTING,
)

# Nothing runs for a job in these states; a watcher can stop watching.
FINISHED_STATUSES = frozenset(
    {JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.REVERTED}
)

# Workers take slices of a job only in these states: filling, or undoing it.
WORKING_STATUSES = (JobStatus.RUNNING, JobStatus.REVERTING)


class SliceStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


OPEN_SLICE_STATUSES = (SliceStatus.PENDING, SliceStatus.RUNNING)
