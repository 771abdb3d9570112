"""What is left to fill, and whether what was filled is sound.

One API for the `backfill check` command, the job total at start and the
contract migration's gate.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import DatabaseError, connection
from psycopg import sql

from backfill import arrivals, conf
from backfill.engine.held import describe as describe_held
from backfill.models import Job
from backfill.nullability import leftover_advice, none_pending, not_valid_leftover
from backfill.registry import Definition
from backfill.statuses import ACTIVE_STATUSES, JobStatus
from backfill.transactions import local_settings


@dataclass(frozen=True)
class PendingCount:
    rows: int
    is_estimate: bool


@dataclass(frozen=True)
class CheckResult:
    name: str
    label: str
    pending: int
    table: str = ""
    problems: list[str] = field(default_factory=list)
    latest_job_id: int | None = None
    latest_job_status: str | None = None
    # Rows the latest job waits on because another transaction holds them.
    held: list[dict[str, Any]] = field(default_factory=list)
    # Of the pending rows, those written since the latest job started (or
    # ended): an old app version inserting without the value; and what to say.
    arrived: int = 0
    arrivals: str = ""
    # A NOT VALID constraint a cut-off contract left while rows are still empty.
    leftover_constraint: str | None = None

    @property
    def passed(self) -> bool:
        return self.pending == 0 and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        if self.passed:
            return f"{self.label}: nothing left to fill; verification passed."
        parts = []
        if self.arrivals:
            parts.append(self.arrivals)
        elif self.pending:
            parts.append(
                f"{self.pending:,} rows of {self.label} are still empty; {self.next_step()}"
            )
        if self.held:
            parts.append(f"job #{self.latest_job_id} waits on {describe_held(self.held)}")
        parts.extend(self.problems)
        if self.leftover_constraint:
            parts.append(
                leftover_advice(
                    self.table, self.leftover_constraint, "run the contract migration again"
                )
            )
        return "; ".join(parts)

    def next_step(self) -> str:
        """What to do about the empty rows: start a job only when none is active."""
        status = self.latest_job_status
        if status == JobStatus.PAUSED:
            return f"job #{self.latest_job_id} is paused: `manage.py backfill resume {self.name}`"
        if status in ACTIVE_STATUSES:
            return (
                f"job #{self.latest_job_id} is {status}: follow it with "
                f"`manage.py backfill status {self.name} --watch`"
            )
        return f"run `manage.py backfill start {self.name}`"


def count_pending(definition: Definition) -> int:
    """Empty rows; none without counting once NOT NULL is enforced (validated, on 18)."""
    with connection.cursor() as cursor:
        if none_pending(cursor, definition):
            return 0
        return definition.count_pending(cursor)


def estimate_pending(definition: Definition, scan_allowed: bool = False) -> PendingCount:
    """A job total without a full-table COUNT(*).

    When the plan for the pending rows uses an index (or the caller allows a
    scan), count them exactly under a short statement timeout; otherwise, or
    when that runs out, take the planner's estimate from the catalog
    statistics and say it is one.
    """
    analyze_if_never_analyzed(definition.table)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + definition.pending_query("1"))
        row = cursor.fetchone()
    plan_doc = row[0] if row else [{"Plan": {}}]
    plan = (json.loads(plan_doc) if isinstance(plan_doc, str) else plan_doc)[0]["Plan"]
    estimate = int(plan.get("Plan Rows", 0))
    if not scan_allowed and "Index" not in str(plan.get("Node Type", "")):
        return PendingCount(estimate, True)
    timeout = conf.current().exact_count_timeout_ms
    try:
        with local_settings({"statement_timeout": f"{timeout}ms"}) as cursor:
            cursor.execute(definition.pending_query("count(*)"))
            counted = cursor.fetchone()
        return PendingCount(int(counted[0]) if counted else 0, False)
    except DatabaseError:
        return PendingCount(estimate, True)


def analyze_if_never_analyzed(table: str) -> None:
    """A freshly loaded table has no statistics and the planner's guess is wild.

    ANALYZE reads a fixed-size sample (fast whatever the table size) and does
    not block reads or writes; under a short lock timeout it gives way to a
    running VACUUM or DDL instead of waiting for it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_analyze IS NULL AND last_autoanalyze IS NULL "
            "FROM pg_stat_user_tables WHERE relid = to_regclass(%s)",
            [sql.Identifier(table).as_string()],
        )
        row = cursor.fetchone()
    if not row or not row[0]:
        return
    try:
        with local_settings({"lock_timeout": "1s"}) as cursor:
            cursor.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)).as_string())
    except DatabaseError:
        return


def check(definition: Definition) -> CheckResult:
    pending = count_pending(definition)
    with connection.cursor() as cursor:
        problems = definition.verify(cursor)
        arrived = arrivals.recent(cursor, definition) if pending else None
        leftover = (
            not_valid_leftover(cursor, definition.table, definition.target_column)
            if pending
            else None
        )
    latest = Job.objects.latest_for(definition.name)
    waiting = latest.slices.exclude(held_keys=[]) if latest and latest.is_active else []
    return CheckResult(
        name=definition.name,
        label=definition.label,
        pending=pending,
        table=definition.table,
        problems=problems,
        latest_job_id=latest.pk if latest else None,
        latest_job_status=latest.status if latest else None,
        held=[row for slc in waiting for row in slc.held],
        arrived=arrived.rows if arrived else 0,
        arrivals=arrived.explain(pending) if arrived else "",
        leftover_constraint=leftover,
    )
