"""The job lifecycle: one table of transitions keyed by action, and the only code
that changes a job's status.

The CLI, the dashboard's buttons, the JSON API, the admin and the engine all
ask this table (`actions_for`, `refusal`) and move jobs through `transition`,
which locks the job row, checks the move, applies it and records who made it,
so a pause racing a batch commit or two clicks at once resolve cleanly.
"""

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from backfill.engine.guards import (
    already_active_message,
    column_still_nullable,
    no_other_active,
    write_log_kept,
)
from backfill.errors import ActiveJobExists, BackfillError, InvalidTransition
from backfill.models import Event, Job, Slice
from backfill.statuses import FINISHED_STATUSES, JobStatus


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


@dataclass(frozen=True)
class Change:
    """Who asks, and what the caller measured before the job row was locked (the
    app's commit latency alone, while the job wrote nothing)."""

    actor: str
    detail: str = ""
    latency_baseline_ms: float | None = None
    at: datetime = field(default_factory=timezone.now)


# Guards return a reason to refuse, or None; effects apply with the move, in its
# transaction. Their docstrings are the docs' "refused when" and "changes".


def is_latest(job: Job) -> str | None:
    """a newer job of the same backfill exists (only the latest one is acted on)"""
    latest = Job.objects.latest_for(job.definition)
    if latest is None or latest.pk == job.pk:
        return None
    return f"job #{latest.pk} is newer; act on it instead"


def never_reverted(job: Job) -> str | None:
    """a revert of the job has begun (it emptied rows behind those cursors again)"""
    if job.revert_started_at is None:
        return None
    return (
        f"its fill was reverted; start a new job with `manage.py backfill start {job.definition}`"
    )


def stamp_started(job: Job, change: Change) -> None:
    """`started_at` set"""
    job.started_at = job.started_at or change.at


def stamp_finished(job: Job, change: Change) -> None:
    """`finished_at` set once the job has ended"""
    if job.status in FINISHED_STATUSES:
        job.finished_at = change.at


def reopen_finished(job: Job, change: Change) -> None:
    """`finished_at` and the error cleared"""
    job.finished_at, job.error = None, ""


def keep_error(job: Job, change: Change) -> None:
    """the error kept on the job"""
    job.error = change.detail


def weigh_pacing_afresh(job: Job, change: Change) -> None:
    """a new latency baseline, every worker back, the pause verdict forgotten (the app's
    load may have changed meanwhile)"""
    if job.pace:
        job.latency_baseline_ms = change.latency_baseline_ms or job.latency_baseline_ms
    job.pace_workers = None
    job.pause_given_up_until = None


def forget_reservations(job: Job, change: Change) -> None:
    """dispatches no worker took forgotten (their messages found the job stopped)"""
    Slice.objects.filter(job=job).open().drop_reservations()


def reopen_failed_slices(job: Job, change: Change) -> None:
    """failed slices reopened with fresh budgets, from their cursors"""
    Slice.objects.filter(job=job).failed().reopen()


def open_slices_for_revert(job: Job, change: Change) -> None:
    """the first revert walks every slice from its start; asking again reopens the failed
    slices from their cursors; `revert_started_at` set the first time"""
    slices = Slice.objects.filter(job=job)
    if job.revert_started_at is None:
        job.revert_started_at = change.at
        fresh = {"passes": 1, "rows_skipped": 0, "held_keys": [], "held": [], "held_tries": 0}
        slices.reopen(cursor=F("after"), **fresh)
    else:
        slices.failed().reopen()


def stamp_reverted(job: Job, change: Change) -> None:
    """`reverted_at` set"""
    job.reverted_at = change.at


Guard = Callable[[Job], str | None]
Effect = Callable[[Job, Change], None]


@dataclass(frozen=True)
class Edge:
    """Where an action may start, where it leads, who may ask, why, and what it changes."""

    moves: dict[JobStatus, JobStatus]
    by_people: bool  # offered on the CLI, the dashboard and the API
    why: str
    guards: tuple[Guard, ...] = ()
    effects: tuple[Effect, ...] = ()
    hint: str = ""  # what to do instead, when refused from the wrong status


TRANSITIONS: dict[Action, Edge] = {
    Action.START: Edge(
        {JobStatus.PENDING: JobStatus.RUNNING},
        False,
        "the job is created pending and started in one transaction, with its slices; "
        "nobody sees it pending",
        guards=(no_other_active,),
        effects=(stamp_started,),
    ),
    Action.PAUSE: Edge(
        {JobStatus.RUNNING: JobStatus.PAUSED},
        True,
        "workers stop after the batch in flight; its rows stay",
        guards=(is_latest,),
    ),
    Action.RESUME: Edge(
        {JobStatus.PAUSED: JobStatus.RUNNING},
        True,
        "slices carry on from their cursors",
        guards=(is_latest,),
        effects=(weigh_pacing_afresh, forget_reservations),
    ),
    Action.CANCEL: Edge(
        {
            JobStatus.RUNNING: JobStatus.CANCELLING,
            JobStatus.PAUSED: JobStatus.CANCELLED,
            JobStatus.REVERTING: JobStatus.CANCELLING,
        },
        True,
        "a running job or a revert waits for its batches in flight; a paused one has none; "
        "a cancelled revert carries on where it stopped when asked again",
        guards=(is_latest,),
        effects=(stamp_finished,),
    ),
    Action.RETRY: Edge(
        {JobStatus.FAILED: JobStatus.RUNNING},
        True,
        "failed slices resume from their cursors with fresh budgets, and the job's "
        "rechecks before success count afresh",
        guards=(is_latest, never_reverted),
        effects=(reopen_finished, reopen_failed_slices, weigh_pacing_afresh, forget_reservations),
    ),
    Action.REVERT: Edge(
        {
            JobStatus.SUCCEEDED: JobStatus.REVERTING,
            JobStatus.FAILED: JobStatus.REVERTING,
            JobStatus.CANCELLED: JobStatus.REVERTING,
        },
        True,
        "workers undo what the job filled, slice by slice; after a failed revert, "
        "asking again carries on where it stopped",
        guards=(is_latest, column_still_nullable, write_log_kept),
        effects=(reopen_finished, open_slices_for_revert),
        hint="cancel it first, or let it end",
    ),
    Action.FAIL: Edge(
        {
            JobStatus.RUNNING: JobStatus.FAILED,
            JobStatus.PAUSED: JobStatus.FAILED,
            JobStatus.REVERTING: JobStatus.FAILED,
        },
        False,
        "a slice ran out of attempts, also while the job was paused: never stuck running",
        effects=(stamp_finished, keep_error),
    ),
    Action.SUCCEED: Edge(
        {JobStatus.RUNNING: JobStatus.SUCCEEDED},
        False,
        "every slice is done and no pending row appeared beyond the job's range",
        effects=(stamp_finished,),
    ),
    Action.FINISH_CANCEL: Edge(
        {JobStatus.CANCELLING: JobStatus.CANCELLED},
        False,
        "no worker holds a slice of the job any more",
        effects=(stamp_finished,),
    ),
    Action.FINISH_REVERT: Edge(
        {JobStatus.REVERTING: JobStatus.REVERTED},
        False,
        "every slice of the revert is done",
        effects=(stamp_finished, stamp_reverted),
    ),
}

PEOPLE_ACTIONS = tuple(action for action, edge in TRANSITIONS.items() if edge.by_people)


REFUSALS: dict[Guard, type[BackfillError]] = {no_other_active: ActiveJobExists}


def refused(job: Job, action: Action) -> BackfillError | None:
    """The error `action` on `job` would raise now (InvalidTransition unless REFUSALS
    says otherwise), or None when it is allowed."""
    edge = TRANSITIONS[action]
    if job.status not in edge.moves:
        allowed = " or ".join(sorted(edge.moves))
        hint = f"; {edge.hint}" if edge.hint and job.status not in FINISHED_STATUSES else ""
        return InvalidTransition(f"it is {job.status}, not {allowed}{hint}")
    for guard in edge.guards:
        reason = guard(job)
        if reason is not None:
            return REFUSALS.get(guard, InvalidTransition)(reason)
    return None


def refusal(job: Job, action: Action) -> str | None:
    """Why `action` is not allowed on `job` now, or None when it is."""
    return None if (error := refused(job, action)) is None else str(error)


def actions_for(job: Job) -> list[Action]:
    """What people may do with this job now: the CLI, the buttons and the API agree."""
    return [action for action in PEOPLE_ACTIONS if refusal(job, action) is None]


def transition(
    job: Job | int,
    action: Action,
    actor: str,
    detail: str = "",
    latency_baseline_ms: float | None = None,
) -> Job:
    """Apply `action` or raise InvalidTransition (nothing changed); record who did it."""
    job_id = job if isinstance(job, int) else job.pk
    change = Change(actor, detail, latency_baseline_ms)
    try:
        with transaction.atomic():
            return apply(Job.objects.select_for_update(no_key=True).get(pk=job_id), action, change)
    except IntegrityError:
        # The one-active-job constraint: another job started between the guard and the save.
        raise ActiveJobExists(already_active_message(Job.objects.get(pk=job_id))) from None


def apply(job: Job, action: Action, change: Change) -> Job:
    error = refused(job, action)
    if error is not None:
        raise type(error)(f"cannot {action} {job.definition} job #{job.pk}: {error}")
    edge = TRANSITIONS[action]
    previous = JobStatus(job.status)
    job.status = edge.moves[previous]
    for effect in edge.effects:
        effect(job, change)
    job.save()
    record(job, action, change.actor, change.detail, from_status=previous, to_status=job.status)
    return job


def record(
    job: Job, action: str, actor: str, detail: str = "", from_status: str = "", to_status: str = ""
) -> Event:
    moved = {"from_status": from_status, "to_status": to_status}
    return Event.objects.create(job=job, action=action, actor=actor, detail=detail, **moved)


def lifecycle_table() -> str:
    """The table above as Markdown, for docs/engine.md (a test keeps the two equal)."""
    lines = [
        "| action | from → to | asked by | why | refused when | changes |",
        "|---|---|---|---|---|---|",
    ]
    for action, edge in TRANSITIONS.items():
        moves = ", ".join(f"{source} → {target}" for source, target in edge.moves.items())
        who = "people" if edge.by_people else "engine"
        refusals = "; ".join(" ".join((guard.__doc__ or "").split()) for guard in edge.guards)
        changes = "; ".join(" ".join((effect.__doc__ or "").split()) for effect in edge.effects)
        lines.append(
            f"| {action} | {moves} | {who} | {edge.why} | {refusals or 'never'} | {changes or 'nothing else'} |"
        )
    return "\n".join(lines)
