"""Pure logic: batch sizing, back-off, the lifecycle table."""

from pathlib import Path

import pytest
from django.utils import timezone

from backfill.conf import BatchLimits
from backfill.engine.lifecycle import TRANSITIONS, Action, actions_for, lifecycle_table, refusal
from backfill.engine.throttle import BatchSizer, backoff_seconds
from backfill.models import Job, JobStatus

LIMITS = BatchLimits(
    min_size=100,
    max_size=10_000,
    target_seconds=0.2,
    lock_timeout_ms=500,
    statement_timeout_ms=10_000,
    max_attempts=5,
    max_lock_timeouts=30,
    backoff_seconds=0.5,
    max_backoff_seconds=4.0,
)
SIZER = BatchSizer(LIMITS)


def test_fast_full_batches_grow_toward_the_target():
    assert SIZER.next_size(1_000, 1_000, 0.1) == 1_500
    assert SIZER.next_size(1_000, 1_000, 0.05) == 2_500


def test_a_batch_far_under_its_target_grows_at_most_fourfold():
    assert SIZER.next_size(1_000, 1_000, 0.001) == 4_000


def test_slow_batches_shrink_at_most_by_a_quarter_per_step():
    assert SIZER.next_size(4_000, 4_000, 10.0) == 3_000


def test_a_short_batch_at_the_end_of_a_slice_does_not_grow_the_size():
    assert SIZER.next_size(1_000, 10, 0.001) == 1_000


def test_sizes_stay_within_bounds():
    assert SIZER.next_size(9_000, 9_000, 0.001) == 10_000
    assert SIZER.after_timeout(150) == 100


def test_backoff_grows_and_is_capped():
    assert 0.25 <= backoff_seconds(LIMITS, 1) <= 0.5
    assert 2.0 <= backoff_seconds(LIMITS, 10) <= 4.0


@pytest.mark.parametrize(
    ("status", "action", "target"),
    [
        (JobStatus.RUNNING, Action.PAUSE, JobStatus.PAUSED),
        (JobStatus.PAUSED, Action.RESUME, JobStatus.RUNNING),
        (JobStatus.RUNNING, Action.CANCEL, JobStatus.CANCELLING),
        (JobStatus.PAUSED, Action.CANCEL, JobStatus.CANCELLED),
        (JobStatus.CANCELLING, Action.FINISH_CANCEL, JobStatus.CANCELLED),
        (JobStatus.FAILED, Action.RETRY, JobStatus.RUNNING),
        (JobStatus.PAUSED, Action.FAIL, JobStatus.FAILED),
        (JobStatus.SUCCEEDED, Action.REVERT, JobStatus.REVERTING),
        (JobStatus.REVERTING, Action.FINISH_REVERT, JobStatus.REVERTED),
        (JobStatus.SUCCEEDED, Action.RESUME, None),
        (JobStatus.CANCELLED, Action.RETRY, None),
        (JobStatus.PAUSED, Action.SUCCEED, None),
        (JobStatus.CANCELLING, Action.RESUME, None),
        (JobStatus.RUNNING, Action.REVERT, None),
        (JobStatus.REVERTED, Action.REVERT, None),
    ],
)
@pytest.mark.django_db
def test_the_lifecycle_table(status, action, target):
    job = Job(definition="x", status=status)
    assert (refusal(job, action) is None) is (target is not None)
    if target is not None:
        assert TRANSITIONS[action].moves[status] == target


@pytest.mark.django_db
def test_a_failed_job_whose_revert_began_refuses_retry_but_not_revert():
    job = Job(definition="x", status=JobStatus.FAILED, revert_started_at=timezone.now())
    assert "reverted" in (refusal(job, Action.RETRY) or "")
    assert actions_for(job) == [Action.REVERT]


def test_every_status_has_a_way_forward_or_is_final():
    """No status strands a job: each is final or some action leaves it."""
    sources = {status for edge in TRANSITIONS.values() for status in edge.moves}
    stranded = set(JobStatus) - sources - {JobStatus.REVERTED}
    assert not stranded


def test_the_lifecycle_in_the_docs_is_the_table_in_the_code():
    documented = (Path(__file__).parents[2] / "docs" / "engine.md").read_text()
    assert lifecycle_table() in documented, (
        "docs/engine.md must contain this table:\n" + lifecycle_table()
    )


CALM = BatchLimits(**{**LIMITS.__dict__, "calm_target_seconds": 2.0})


def test_calm_batches_grow_toward_the_calm_target_and_others_toward_the_short_one():
    assert BatchSizer(CALM).next_size(1_000, 1_000, 0.2) == 1_000
    assert BatchSizer(CALM).next_size(1_000, 1_000, 0.2, calm=True) == 4_000
    assert BatchSizer(LIMITS).next_size(1_000, 1_000, 0.2, calm=True) == 1_000  # no calm target


def test_a_batch_someone_waited_on_is_cut_to_the_short_target_at_once():
    assert BatchSizer(CALM).after_waiters(8_000, 1.6) == 1_000
    assert BatchSizer(CALM).after_waiters(8_000, 0.1) == 8_000
    assert BatchSizer(CALM).after_waiters(8_000, 100.0) == 100
