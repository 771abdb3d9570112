"""Undo a job's fill: run by the workers, slice by slice, like the fill itself.

Reverting reuses the job's slices: each takes its writes off the write log
(write_log.py) in batches and hands them to the definition's `revert`, in a short
transaction with the same limits, back-off and failure budgets as a fill batch
(the runner drives both). Taking writes off the log, undoing them and counting
`rows_reverted` commit together, so a crash loses at most one batch and a
revert that failed carries on where it stopped when asked again.
"""

import time
from typing import Any

from backfill.conf import BatchLimits
from backfill.engine import write_log
from backfill.engine.batch import BatchResult, count_success, record_sample
from backfill.engine.lifecycle import Action, transition
from backfill.models import Job, Slice, SliceStatus
from backfill.pacing.controller import SpeedLimit
from backfill.registry import Definition
from backfill.transactions import REVERTING_SETTING, batch_transaction


def begin(job: Job, actor: str) -> Job:
    """Move the job to reverting; the REVERT edge opens its slices (lifecycle.py)."""
    return transition(job, Action.REVERT, actor)


def run_revert_batch(
    definition: Definition,
    context: dict[str, Any],
    slice_id: int,
    owner: str,
    size: int,
    limits: BatchLimits,
) -> BatchResult:
    """Undo the slice's oldest logged batch; cost follows the rows the job filled."""
    started = time.monotonic()
    with batch_transaction(limits, {REVERTING_SETTING: "on"}) as cursor:
        slc = Slice.objects.locked_for(slice_id, owner)
        taken = write_log.take(cursor, slc.job_id, slc.number)
        reverted = definition.revert(cursor, context, taken) if taken else 0
        slc.rows_reverted += reverted
        count_success(slc, size)
        done = not taken
        if done:
            slc.cursor = slc.high
            slc.status = SliceStatus.DONE
        seconds = time.monotonic() - started
        slc.save()
        record_sample(slc, reverted, size, seconds, SpeedLimit())
    return BatchResult(len(taken), reverted, seconds, new_pass=False, slice_done=done)
