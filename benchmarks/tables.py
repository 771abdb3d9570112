"""Tables of other shapes in the suite: pending rows bunched before a gap, and UUID keys.

Run by the suite (`python -m benchmarks.suite`), on the example app's tables
(examples/): B (one UPDATE of every pending row, one transaction) against
S2 (two real workers), with no app load.

- gap: `examples_reading`, ids 1..ROWS/2 and 10^12 + 1..ROWS/2, the oldest
  30% pending: equal key ranges over [min, max] would give every pending row
  to the first slice. Reported with how evenly the job's slices shared the rows.
- uuid: `examples_ticket`, ROWS random UUID keys, all pending.

The table names and expressions are written here as SQL, so B and the
verification need no Django.
"""

import time
from pathlib import Path

import psycopg

from benchmarks.databases import copy_of, drop, manage, recreate, url, vacuum_analyze
from benchmarks.results import Run
from benchmarks.scenarios import Measure, job_run
from benchmarks.workers import BROKER_URL, Workers

SETTINGS_MODULE = "examples.settings"
GAP = 10**12
PENDING_SHARE = 0.3


class Table:
    """One example table: how to seed it, its backfill, and the set-based pass."""

    def __init__(self, kind: str, name: str, table: str, column: str, expression: str) -> None:
        self.kind, self.name, self.table = kind, name, table
        self.column, self.expression = column, expression

    def seed_sql(self, rows: int) -> list[str]:
        if self.kind == "gap":
            half, pending = rows // 2, int(rows * PENDING_SHARE)
            return [
                f"INSERT INTO {self.table} (id, value, label) SELECT g, g, "
                f"CASE WHEN g <= {pending} THEN NULL ELSE 'r' || g END FROM generate_series(1, {half}) g",
                f"INSERT INTO {self.table} (id, value, label) "
                f"SELECT {GAP} + g, g, 'r' || g FROM generate_series(1, {rows - half}) g",
            ]
        if self.kind == "cheap":
            return [
                f"INSERT INTO {self.table} (id, value, label) "
                f"SELECT g, g, NULL FROM generate_series(1, {rows}) g"
            ]
        return [
            f"INSERT INTO {self.table} (id, subject) "
            f"SELECT gen_random_uuid(), 'ticket ' || g FROM generate_series(1, {rows}) g"
        ]

    def pending(self, db: str) -> int:
        with psycopg.connect(url(db)) as conn:
            row = conn.execute(
                f"SELECT count(*) FROM {self.table} WHERE {self.column} IS NULL"
            ).fetchone()
        return int(row[0]) if row else 0

    def wrong(self, db: str) -> int:
        """Rows whose value is not the expression's (unfilled rows included)."""
        with psycopg.connect(url(db)) as conn:
            row = conn.execute(
                f"SELECT count(*) FROM {self.table} "
                f"WHERE {self.column} IS DISTINCT FROM ({self.expression})"
            ).fetchone()
        return int(row[0]) if row else 0


# The expressions are those of examples/backfills.py, read again here to verify.
TABLES = [
    Table("gap", "reading_labels", "examples_reading", "label", "'r' || value"),
    Table("uuid", "ticket_codes", "examples_ticket", "code", "upper(left(md5(subject), 8))"),
]
# The cheapest fill there is: every row pending, dense integer keys, a
# concatenation (benchmarks/cost.py).
CHEAP = Table("cheap", "reading_labels", "examples_reading", "label", "'r' || value")


def seed(table: Table, rows: int) -> str:
    db = recreate(f"backfill_bench_{table.kind}")
    manage(db, "migrate", "-v0", DJANGO_SETTINGS_MODULE=SETTINGS_MODULE)
    with psycopg.connect(url(db)) as conn:
        for statement in table.seed_sql(rows):
            conn.execute(statement)
    vacuum_analyze(db)
    return db


def set_based(table: Table, rows: int) -> Measure:
    def run(db: str) -> Run:
        started = time.time()
        with psycopg.connect(url(db)) as conn:
            cursor = conn.execute(
                f"UPDATE {table.table} SET {table.column} = ({table.expression}) "
                f"WHERE {table.column} IS NULL"
            )
            filled = cursor.rowcount
        seconds = time.time() - started
        return Run(
            "B", "one set-based pass, one transaction", rows, filled, seconds, started, 0, False
        )

    return run


SLICES_SQL = (
    "SELECT s.rows_done, s.number FROM backfill_slice s JOIN backfill_job j ON j.id = s.job_id "
    "WHERE j.definition = %s ORDER BY s.number"
)


def evenness(db: str, name: str) -> str:
    """The largest slice's rows against an even share, over the slices the job began with."""
    with psycopg.connect(url(db)) as conn:
        slices = conn.execute(SLICES_SQL, [name]).fetchall()
    done = [int(rows) for rows, _ in slices]
    total = sum(done)
    if not total:
        return "no rows"
    largest = max(done) / total
    return f"{len(done)} slices, the largest with {largest:.1%} of the rows (even: {1 / len(done):.1%})"


def service(table: Table, rows: int, logs: Path, workers: int = 2) -> Measure:
    def run(db: str) -> Run:
        with Workers(db, workers, logs, {"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}) as pool:
            manage(
                db,
                "backfill",
                "run",
                table.name,
                f"--concurrency={workers}",
                "--pace=off",
                quiet=True,
                REDIS_URL=BROKER_URL,
                DJANGO_SETTINGS_MODULE=SETTINGS_MODULE,
            )
        result = job_run(db, table.name, f"S{workers}", rows, pool.peak_mb)
        result.method = (
            f"this service, {workers} worker{'' if workers == 1 else 's'}, no app load; "
            f"{evenness(db, table.name)}"
        )
        return result

    return run


def comparison(rows: int, logs: Path) -> list[Run]:
    """B and S2 on each example table, each on a fresh copy of the table's seed."""
    runs = []
    for table in TABLES:
        template = seed(table, rows)
        pending = table.pending(template)
        for label, measure in (("B", set_based(table, rows)), ("S2", service(table, rows, logs))):
            db = copy_of(template, f"backfill_bench_{table.kind}_run")
            result = measure(db)
            result.label = f"{label} {table.kind}"
            result.verification = {"pending_at_start": pending, "wrong": table.wrong(db)}
            result.correct = result.rows == pending and result.verification["wrong"] == 0
            drop(db)
            print(f"{result.label}: {result.rows:,} rows in {result.seconds:.1f} s", flush=True)
            runs.append(result)
        drop(template)
    return runs
