"""The write log is dropped once its job can no longer be reverted.

Revert acts on the latest job of a definition, and only while its column
may hold NULL again: once a newer job exists, or the contract made the
column NOT NULL, the job's log can never be read again, and it costs about
as much disk as the keys and values it filled (docs/engine.md, "Revert").
The engine drops it then: when a newer job succeeds, and at each sweep for
a contract applied since; `manage.py backfill prune` does the same at once.
A pruned job records it, and its revert is refused from then on (the
column may be made nullable again by reversing the contract, but what the
job wrote is no longer known).
"""

import logging
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from psycopg import sql

from backfill.engine.guards import PRUNED, column_still_nullable
from backfill.engine.lifecycle import record
from backfill.models import Job, Write

logger = logging.getLogger(__name__)

# Log rows (one per batch) deleted per transaction: short transactions, so
# pruning a large log never holds back vacuum or the app.
CHUNK = 1000

DELETE_CHUNK_SQL = """
DELETE FROM {log} WHERE id IN (
    SELECT id FROM {log} WHERE job_id = %(job)s ORDER BY job_id, slice_number, id LIMIT %(chunk)s
)
"""


@dataclass(frozen=True)
class Pruned:
    job_id: int
    definition: str
    batches: int
    reason: str


def why_unrevertible(job: Job) -> str | None:
    """Why the job can never be reverted again, or None while it still may be."""
    if job.is_active:
        return None
    latest = Job.objects.latest_for(job.definition)
    if latest is not None and latest.pk != job.pk:
        return f"job #{latest.pk} is newer"
    return column_still_nullable(job)


def candidates(definition: str | None = None) -> list[Job]:
    """Jobs that are not active and still have a write log."""
    logged = Write.objects.filter(job=OuterRef("pk"))
    jobs = Job.objects.filter(Exists(logged)).order_by("pk")
    if definition is not None:
        jobs = jobs.filter(definition=definition)
    return [job for job in jobs if not job.is_active]


def prune(definition: str | None = None, actor: str = "engine") -> list[Pruned]:
    """Drop the write log of every job that can no longer be reverted."""
    done = []
    for job in candidates(definition):
        reason = why_unrevertible(job)
        if reason is None:
            continue
        batches = drop_log(job.pk)
        record(job, PRUNED, actor, f"write log of {batches} batches dropped: {reason}")
        logger.info("job %s: write log of %s batches dropped: %s", job.pk, batches, reason)
        done.append(Pruned(job.pk, job.definition, batches, reason))
    return done


def drop_log(job_id: int) -> int:
    statement = sql.SQL(DELETE_CHUNK_SQL).format(log=sql.Identifier(Write._meta.db_table))
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement.as_string(), {"job": job_id, "chunk": CHUNK})
            deleted = int(cursor.rowcount)
        total += deleted
        if deleted < CHUNK:
            return total
