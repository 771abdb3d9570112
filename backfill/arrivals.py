"""Rows an older app version inserted without the value, told apart from rows left behind.

During a rolling deploy, servers still on the old code insert rows without
the new value; the guard lets them (schema/guard.py) and the backfill fills
them. They are not the backfill's failure, and the operator's next step is
not the same (let the deploy finish, not debug `fill()`), so the engine and
the gates tell them apart by when a row was written. A row's `xmin` is the
transaction that last wrote it; an event of the job (a row of the events
table, written when the job started or last looked at its data) marks a
moment. A pending row written by a later transaction than the event's
arrived since. `age()` compares the two without wraparound trouble, for
2^31 transactions after the event.
"""

import math
from dataclasses import dataclass
from datetime import datetime

from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from psycopg import sql

from backfill.models import Event, Job, Sample
from backfill.registry import Definition

# True for a row written by a later transaction than the event %(event)s.
WRITTEN_SINCE = "age({table}.xmin) < (SELECT age(e.xmin) FROM {events} e WHERE e.id = %(event)s)"

# True for a row written by one of job %(job)s's batches: each writes a sample
# in its own transaction. (A fill that writes NULL leaves rows behind, however
# recently it wrote them.) The job's recent samples only: it keeps the last
# BACKFILL_SAMPLES_PER_JOB.
WRITTEN_BY_JOB = "{table}.xmin IN (SELECT s.xmin FROM {samples} s WHERE s.job_id = %(job)s)"

# True for a pending row the job's last look left to its passes, or its own
# batch left empty: not an arrival.
LEFT_BEHIND = f"(NOT ({WRITTEN_SINCE}) OR {WRITTEN_BY_JOB})"

# Pending rows written since the event, other than by the job's own batches.
COUNT_SQL = (
    "SELECT count(*) FROM {table} WHERE ({pending}) "
    f"AND {WRITTEN_SINCE} AND NOT {WRITTEN_BY_JOB}"
)


def compose(definition: Definition, template: str) -> str:
    """`definition.compose`, with {events} and {samples} the engine's tables."""
    return definition.compose(
        template,
        events=sql.Identifier(Event._meta.db_table),
        samples=sql.Identifier(Sample._meta.db_table),
    )


@dataclass(frozen=True)
class Arrivals:
    """Pending rows written since `since`, when the latest job started (or ended)."""

    rows: int
    since: datetime
    job_id: int
    job_active: bool
    name: str
    label: str

    @property
    def minutes(self) -> int:
        return max(1, math.ceil((timezone.now() - self.since).total_seconds() / 60))

    def explain(self, pending: int) -> str:
        """The one sentence `check`, the deploy check and the contract say, then what to do.

        `pending` is every empty row; those beyond the arrivals are named apart.
        """
        older = pending - self.rows
        lead = f"{older:,} rows of {self.label} are still empty and " if older > 0 else ""
        were = "row was" if self.rows == 1 else "rows were"
        unit = "minute" if self.minutes == 1 else "minutes"
        said = (
            f"{lead}{self.rows:,} {were} inserted without a value in the last "
            f"{self.minutes:,} {unit}: an old app version is still writing"
        )
        if self.job_active:
            return f"{said}; job #{self.job_id} fills them as they arrive"
        return (
            f"{said}; once every server runs the new version, "
            f"run `manage.py backfill start {self.name}`"
        )


def anchor(job: Job) -> Event | None:
    """The moment rows count as arrived after: the job's start while it works,
    its last event once it has ended (what came after, it never saw)."""
    events = Event.objects.filter(job=job)
    if job.is_active:
        events = events.filter(action="start")
    return events.order_by("-id").first()


def count_since(cursor: CursorWrapper, definition: Definition, event: Event) -> int:
    cursor.execute(compose(definition, COUNT_SQL), {"event": event.pk, "job": event.job_id})
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def recent(cursor: CursorWrapper, definition: Definition) -> Arrivals | None:
    """Pending rows written since the latest job started (or ended); None if none."""
    job = Job.objects.latest_for(definition.name)
    event = anchor(job) if job is not None else None
    if job is None or event is None:
        return None
    rows = count_since(cursor, definition, event)
    if not rows:
        return None
    return Arrivals(rows, event.at, job.pk, job.is_active, definition.name, definition.label)
