"""`backfill plan`: what a backfill will do to this database, before it does it.

Changes nothing. Reads the batch statements' plans (do they walk an index to
the pending rows, or scan the table? for an expression, those of a batch
writing first, as the workers run it), fills one sample batch in a
transaction that is rolled back (rows per second, WAL bytes per row: the
sample's writes are undone, but sequences it drew from stay advanced),
counts what is pending, and projects duration and WAL volume for 1, 2 and
4 workers as if each worker added the sample's rate (an upper bound: on the
benchmark machine two workers did about 1.6 times one). It lists the
contract step's statements with the lock each takes, and warns about what
would hurt now: no index on the pending condition, long transactions,
autovacuum on the table.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection

from backfill import conf
from backfill.engine.batch import SELECT_BATCH_SQL
from backfill.engine.checker import estimate_pending
from backfill.engine.expression_fill import (
    RANGE_END_SQL,
    WRITE_FIRST_SETTINGS,
    WRITE_FIRST_SQL,
    fill_expression,
    statement_for,
)
from backfill.models import Slice
from backfill.nullability import has_not_valid_not_null
from backfill.registry import Definition
from backfill.transactions import batch_transaction, local_settings

WORKERS = (1, 2, 4)
LONG_TRANSACTION_SECONDS = 60

# The contract step (EnforceNotNull), in order, with the lock each statement
# takes and how long it holds it (measured in docs/benchmarks.md): from
# PostgreSQL 18 the NOT NULL constraint itself is added NOT VALID and validated.
CONTRACT_STEPS_18 = (
    ("ADD CONSTRAINT ... NOT NULL column NOT VALID", "ACCESS EXCLUSIVE", "about 1 ms"),
    ("VALIDATE CONSTRAINT", "SHARE UPDATE EXCLUSIVE (reads and writes go on)", "a scan of {size}"),
)
CONTRACT_STEPS = (
    ("ADD CONSTRAINT ... CHECK (column IS NOT NULL) NOT VALID", "ACCESS EXCLUSIVE", "about 1 ms"),
    ("VALIDATE CONSTRAINT", "SHARE UPDATE EXCLUSIVE (reads and writes go on)", "a scan of {size}"),
    ("ALTER COLUMN ... SET NOT NULL", "ACCESS EXCLUSIVE", "about 1 ms (no scan)"),
    ("DROP CONSTRAINT", "ACCESS EXCLUSIVE", "about 1 ms"),
)


@dataclass(frozen=True)
class Projection:
    workers: int
    seconds: float
    wal_mb: float


@dataclass
class Plan:
    name: str
    label: str
    batch_plan: list[str]
    uses_index: bool
    sample_rows: int
    sample_seconds: float
    wal_bytes_per_row: float
    pending: int
    pending_is_estimate: bool
    table_mb: float
    projections: list[Projection] = field(default_factory=list)
    contract_steps: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.sample_rows / self.sample_seconds if self.sample_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1)}

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def make_plan(definition: Definition, sample_size: int | None = None) -> Plan:
    size = sample_size or conf.current().batch_size
    parameters = batch_parameters(definition, size)
    lines = explain(definition, parameters)
    rows, seconds, wal = sample_batch(definition, parameters)
    # A plan is asked for once: an exact count is worth a scan, within the count's timeout.
    total = estimate_pending(definition, scan_allowed=True)
    plan = Plan(
        name=definition.name,
        label=definition.label,
        batch_plan=lines,
        uses_index=not any("Seq Scan" in line for line in lines),
        sample_rows=rows,
        sample_seconds=round(seconds, 4),
        wal_bytes_per_row=round(wal / rows, 1) if rows else 0.0,
        pending=total.rows,
        pending_is_estimate=total.is_estimate,
        table_mb=round(table_bytes(definition) / 2**20, 1),
    )
    plan.projections = project(plan)
    plan.contract_steps = [
        {"statement": s, "lock": lock, "holds": holds.format(size=f"{plan.table_mb:,.0f} MB")}
        for s, lock, holds in (
            CONTRACT_STEPS_18 if has_not_valid_not_null(connection) else CONTRACT_STEPS
        )
    ]
    plan.warnings = warnings(definition, plan)
    return plan


def batch_parameters(definition: Definition, size: int) -> dict[str, Any]:
    """The first batch of a one-slice job: every key, every share."""
    with connection.cursor() as cursor:
        cursor.execute(
            definition.compose("SELECT {key}::text FROM {table} ORDER BY {key} DESC LIMIT 1")
        )
        row = cursor.fetchone()
    high = row[0] if row else None
    return {"after": None, "high": high, "size": size, "modulus": 1, "others": []}


def explain(definition: Definition, parameters: dict[str, Any]) -> list[str]:
    """The plans of what a worker's first batch runs. For an expression, a batch
    writing first: where its range ends, then the UPDATE of that range (EXPLAIN
    alone does not run it)."""
    if definition.set_expression() is None:
        with connection.cursor() as cursor:
            return explained(cursor, definition.compose(SELECT_BATCH_SQL), parameters)
    with local_settings(WRITE_FIRST_SETTINGS) as cursor:
        end_statement = definition.compose(RANGE_END_SQL)
        lines = explained(cursor, end_statement, parameters)
        cursor.execute(end_statement, parameters)
        row = cursor.fetchone()
        ranged = {**parameters, "high": row[0] if row else parameters["high"], "job": 0, "slice": 0}
        return lines + explained(cursor, statement_for(definition, WRITE_FIRST_SQL), ranged)


def explained(cursor: Any, statement: str, parameters: dict[str, Any]) -> list[str]:
    cursor.execute("EXPLAIN " + statement, parameters)
    return [str(row[0]) for row in cursor.fetchall()]


class Rollback(Exception):
    """Raised inside the sample's transaction so that nothing of it stays."""


def sample_batch(definition: Definition, parameters: dict[str, Any]) -> tuple[int, float, int]:
    """Rows filled, seconds, WAL bytes: one batch as the workers run it, then rolled back."""
    if parameters["high"] is None:
        return 0, 0.0, 0
    result = (0, 0.0, 0)
    try:
        with batch_transaction(conf.BatchLimits.from_settings()) as cursor:
            cursor.execute("SELECT pg_current_wal_insert_lsn()")
            start_lsn = cursor.fetchone()[0]
            started = time.monotonic()
            filled = fill_sample(cursor, definition, parameters)
            seconds = time.monotonic() - started
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", [start_lsn])
            wal = int(cursor.fetchone()[0])
            result = (filled, seconds, wal)
            raise Rollback
    except Rollback:
        pass
    return result


def fill_sample(cursor: Any, definition: Definition, parameters: dict[str, Any]) -> int:
    """The first batch's fill as a worker runs it: an expression's writing first."""
    if definition.set_expression() is None:
        cursor.execute(definition.compose(SELECT_BATCH_SQL), parameters)
        rows = [(key, *rest) for key, locked, *rest in cursor.fetchall() if locked]
        return definition.fill(cursor, rows) if rows else 0
    # Never saved: it gives the statements their bounds (the sample rolls back).
    whole = Slice(job_id=0, number=0, after=None, cursor=None, high=parameters["high"])
    limits = conf.BatchLimits.from_settings()
    size = int(parameters["size"])
    return fill_expression(cursor, definition, whole, size, False, limits.lock_timeout_ms).filled


def table_bytes(definition: Definition) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(to_regclass(%s))", [f'"{definition.table}"'])
        row = cursor.fetchone()
    return int(row[0] or 0) if row else 0


def project(plan: Plan) -> list[Projection]:
    rate = plan.rows_per_second
    wal_mb = round(plan.pending * plan.wal_bytes_per_row / 2**20, 1)
    return [
        Projection(n, round(plan.pending / (rate * n), 3) if rate else 0.0, wal_mb) for n in WORKERS
    ]


def warnings(definition: Definition, plan: Plan) -> list[str]:
    found = []
    if not plan.uses_index:
        found.append(
            "the batch statement scans the table for pending rows: add the pending-rows "
            "index (GuardFilledColumn in the expand step) before a large backfill"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, round(extract(epoch FROM now() - xact_start))::int, left(query, 80) "
            "FROM pg_stat_activity WHERE xact_start < now() - make_interval(secs => %s) "
            "AND pid <> pg_backend_pid() AND datname = current_database() ORDER BY xact_start",
            [LONG_TRANSACTION_SECONDS],
        )
        for pid, state, age, query in cursor.fetchall():
            found.append(
                f"pid {pid} has been in a transaction for {age} s ({state}: {query!r}): "
                "batches may wait on its rows, and it holds back vacuum"
            )
        cursor.execute(
            "SELECT count(*) FROM pg_stat_progress_vacuum WHERE relid = to_regclass(%s)",
            [f'"{definition.table}"'],
        )
        row = cursor.fetchone()
        if row and row[0]:
            found.append(f"autovacuum is running on {definition.table} now")
    return found


def reading_node(lines: list[str]) -> str:
    """The plan node that finds the candidates: the first scan of a table or index."""
    scans = [
        line.strip().removeprefix("->").strip()
        for line in lines
        if "Scan using" in line or "Seq Scan" in line
    ]
    return scans[0].split("  (cost")[0] if scans else "no scan found"


def describe(plan: Plan) -> str:
    """The plan for people, a few lines."""
    lines = [
        f"{plan.label} ({plan.name}): "
        + (f"about {plan.pending:,}" if plan.pending_is_estimate else f"{plan.pending:,}")
        + f" rows pending; table {plan.table_mb:,.1f} MB",
        "batch statement: "
        + ("walks an index to the pending rows" if plan.uses_index else "SCANS THE TABLE")
        + f" ({reading_node(plan.batch_plan)})",
        f"sample batch (rolled back): {plan.sample_rows:,} rows in {plan.sample_seconds * 1000:.0f} ms"
        f" = {plan.rows_per_second:,.0f} rows/s, {plan.wal_bytes_per_row:,.0f} WAL bytes per row",
        "projection (each worker adding the sample's rate; an upper bound):",
    ]
    lines += [
        f"  {p.workers} worker{'s' if p.workers > 1 else ''}: {p.seconds:,.0f} s, {p.wal_mb:,.0f} MB of WAL"
        for p in plan.projections
    ]
    lines.append("contract step (EnforceNotNull):")
    lines += [f"  {s['statement']}: {s['lock']}, {s['holds']}" for s in plan.contract_steps]
    lines += [f"warning: {w}" for w in plan.warnings] or ["no warnings"]
    return "\n".join(lines)
