"""Lifecycle guards that look beyond the job's row: at the other jobs of its
backfill, and at the schema its column has now.

Each returns a reason to refuse, or None; its docstring is the docs' "refused
when" (lifecycle.py keeps the table that names them).
"""

from django.db import connection

from backfill.errors import UnknownDefinition
from backfill.models import Event, Job
from backfill.registry import get_definition

# The event of a job whose write log was dropped (engine/prune.py).
PRUNED = "prune"

# Whether the column is NOT NULL now; no row when the table or column is gone.
NOT_NULL_SQL = """
SELECT attnotnull FROM pg_attribute
WHERE attrelid = to_regclass(quote_ident(%s)) AND attname = %s AND NOT attisdropped
"""


def no_other_active(job: Job) -> str | None:
    """another job of the same backfill is active (one at a time; the database enforces it too)"""
    if not Job.objects.of(job.definition).active().exclude(pk=job.pk).exists():
        return None
    return already_active_message(job)


def already_active_message(job: Job) -> str:
    other = Job.objects.of(job.definition).active().exclude(pk=job.pk).first()
    which = f"job #{other.pk} is {other.status}" if other else "another job is active"
    return (
        f"backfill {job.definition!r} already has an active job ({which}); cancel it or let it end"
    )


def column_still_nullable(job: Job) -> str | None:
    """the column is NOT NULL (the contract applied): emptying its rows would fail every batch"""
    try:
        definition = get_definition(job.definition)
        table, column = definition.table, definition.target_column
    except (UnknownDefinition, LookupError):
        return None  # nothing to revert with: the revert itself says so
    with connection.cursor() as cursor:
        cursor.execute(NOT_NULL_SQL, [table, column])
        row = cursor.fetchone()
    if not row or not row[0]:
        return None
    return f"{definition.label} is NOT NULL now (the contract applied); its rows stay filled"


def write_log_kept(job: Job) -> str | None:
    """its write log was dropped once it could no longer be reverted (what it wrote is unknown)"""
    if job.pk is None or not Event.objects.filter(job=job, action=PRUNED).exists():
        return None
    return "its write log was dropped when it could no longer be reverted; its rows stay filled"
