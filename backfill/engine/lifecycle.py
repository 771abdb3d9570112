"""The job lifecycle: one table of transitions keyed by action, and the only code
that changes a job's status.

The CLI, the dashboard's buttons, the JSON API, the admin and the engine all
ask this table (`actions_for`, `refusal`) and move jobs through `transition`,
which locks the job row, checks the move, applies it and records who made it,
so a pause racing a batch commit or two clicks at once resolve cleanly.
"""

import enum
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from backfill.errors import ActiveJobExists, InvalidTransition
from backfill.models import Event, Job
from backfill.statuses import FINISHED_STATUSES, JobStatus

S = JobStatus


class Action(enum.StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    RETRY = "retry"
    REVERT = "revert"
    FAIL = "fail"
    SUCCEED = "succeed"
    FINISH_CANCEL = "finish-cancel"
    FINISH_REVERT = "finish-revert"


def never_reverted(job: Job) -> str | None:
    """a revert of the job has begun (it emptied rows behind those cursors again)"""
    if job.revert_started_at is None:
        return None
    return (
        f"its fill was reverted; start a new job with `manage.py backfill start {job.definition}`"
    )


@dataclass(frozen=True)
class Edge:
    """Where an action may start, where it leads, who may ask for it, and why."""

    moves: dict[JobStatus, JobStatus]
    by_people: bool  # offered on the CLI, the dashboard and the API
    why: str
    guard: Callable[[Job], str | None] | None = None  # a reason to refuse, or None
    hint: str = ""  # what to do instead, when refused from the wrong status


TRANSITIONS: dict[Action, Edge] = {
    Action.START: Edge(
        {S.PENDING: S.RUNNING},
        False,
        "the job and its slices were created in this transaction; workers may take them",
    ),
    Action.PAUSE: Edge(
        {S.RUNNING: S.PAUSED}, True, "workers stop after the batch in flight; its rows stay"
    ),
    Action.RESUME: Edge({S.PAUSED: S.RUNNING}, True, "slices carry on from their cursors"),
    Action.CANCEL: Edge(
        {S.RUNNING: S.CANCELLING, S.PAUSED: S.CANCELLED},
        True,
        "a running job waits for its batches in flight; a paused one has none",
    ),
    Action.RETRY: Edge(
        {S.FAILED: S.RUNNING},
        True,
        "failed slices resume from their cursors with fresh budgets",
        guard=never_reverted,
    ),
    Action.REVERT: Edge(
        {S.SUCCEEDED: S.REVERTING, S.FAILED: S.REVERTING, S.CANCELLED: S.REVERTING},
        True,
        "workers undo what the job filled, slice by slice; after a failed revert, "
        "asking again carries on where it stopped",
        hint="cancel it first, or let it end",
    ),
    Action.FAIL: Edge(
        {S.RUNNING: S.FAILED, S.PAUSED: S.FAILED, S.REVERTING: S.FAILED},
        False,
        "a slice ran out of attempts, also while the job was paused: never stuck running",
    ),
    Action.SUCCEED: Edge(
        {S.RUNNING: S.SUCCEEDED},
        False,
        "every slice is done and no pending row appeared beyond the job's range",
    ),
    Action.FINISH_CANCEL: Edge(
        {S.CANCELLING: S.CANCELLED}, False, "no worker holds a slice of the job any more"
    ),
    Action.FINISH_REVERT: Edge(
        {S.REVERTING: S.REVERTED}, False, "every slice of the revert is done"
    ),
}

PEOPLE_ACTIONS = tuple(action for action, edge in TRANSITIONS.items() if edge.by_people)


def refusal(job: Job, action: Action) -> str | None:
    """Why `action` is not allowed on `job` now, or None when it is."""
    edge = TRANSITIONS[action]
    if job.status not in edge.moves:
        allowed = " or ".join(sorted(edge.moves))
        hint = f"; {edge.hint}" if edge.hint and job.status not in FINISHED_STATUSES else ""
        return f"it is {job.status}, not {allowed}{hint}"
    return edge.guard(job) if edge.guard else None


def actions_for(job: Job) -> list[Action]:
    """What people may do with this job now: the CLI, the buttons and the API agree."""
    return [action for action in PEOPLE_ACTIONS if refusal(job, action) is None]


def transition(job: Job | int, action: Action, actor: str, detail: str = "") -> Job:
    """Apply `action` or raise InvalidTransition (nothing changed); record who did it."""
    job_id = job if isinstance(job, int) else job.pk
    try:
        with transaction.atomic():
            return apply(
                Job.objects.select_for_update(no_key=True).get(pk=job_id), action, actor, detail
            )
    except IntegrityError:
        # The one-active-job constraint: someone started another job meanwhile.
        raise ActiveJobExists(already_active_message(Job.objects.get(pk=job_id))) from None


def apply(job: Job, action: Action, actor: str, detail: str) -> Job:
    reason = refusal(job, action)
    if reason is not None:
        raise InvalidTransition(f"cannot {action} {job.definition} job #{job.pk}: {reason}")
    previous = JobStatus(job.status)
    target = TRANSITIONS[action].moves[previous]
    now = timezone.now()
    job.status = target
    if target == S.RUNNING and job.started_at is None:
        job.started_at = now
    if target in FINISHED_STATUSES:
        job.finished_at = now
    elif previous in FINISHED_STATUSES:
        job.finished_at = None
    if action == Action.FAIL:
        job.error = detail
    elif target in (S.RUNNING, S.REVERTING):
        job.error = ""
    if action == Action.REVERT and job.revert_started_at is None:
        job.revert_started_at = now
    if action == Action.FINISH_REVERT:
        job.reverted_at = now
    job.save()
    record(job, action, actor, detail, from_status=previous, to_status=target)
    return job


def already_active_message(job: Job) -> str:
    other = Job.objects.of(job.definition).active().exclude(pk=job.pk).first()
    which = f"job #{other.pk} is {other.status}" if other else "another job is active"
    return (
        f"backfill {job.definition!r} already has an active job ({which}); "
        "pause, resume or cancel it"
    )


def record(
    job: Job, action: str, actor: str, detail: str = "", from_status: str = "", to_status: str = ""
) -> Event:
    return Event.objects.create(
        job=job,
        action=action,
        actor=actor,
        detail=detail,
        from_status=from_status,
        to_status=to_status,
    )


def lifecycle_table() -> str:
    """The table above as Markdown, for docs/engine.md (a test keeps the two equal)."""
    lines = ["| action | from → to | asked by | why |", "|---|---|---|---|"]
    for action, edge in TRANSITIONS.items():
        moves = ", ".join(f"{source} → {target}" for source, target in edge.moves.items())
        who = "people" if edge.by_people else "engine"
        guard = f" Refused when {edge.guard.__doc__}." if edge.guard and edge.guard.__doc__ else ""
        lines.append(f"| {action} | {moves} | {who} | {edge.why}.{guard} |")
    return "\n".join(lines)
