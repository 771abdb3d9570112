"""How long the contract step holds ACCESS EXCLUSIVE, beside a plain SET NOT NULL.

    .venv/bin/python -m benchmarks.contract_lock --rows 1000000
    BENCHMARK_SERVER=postgres://postgres@127.0.0.1:PORT .venv/bin/python -m benchmarks.contract_lock

(the second on another server, such as the embedded PostgreSQL 18 that
`scripts/local_postgres.py start --port PORT --data .postgres/bench18` starts).

Seeds ROWS organizations into a template database and fills them in one pass,
then on two identical copies times (a) a plain `ALTER COLUMN admin_id SET NOT
NULL`, which holds ACCESS EXCLUSIVE for its whole scan, and (b) the contract
migration (`EnforceNotNull`), timing each DDL statement it sends: below
PostgreSQL 18, ADD CONSTRAINT ... CHECK ... NOT VALID, SET NOT NULL and DROP
CONSTRAINT hold ACCESS EXCLUSIVE; from 18, ADD CONSTRAINT ... NOT NULL ... NOT
VALID alone does. VALIDATE CONSTRAINT scans under SHARE UPDATE EXCLUSIVE,
which lets reads and writes through.
"""

import argparse
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from benchmarks.databases import copy_of, drop, manage, recreate, shell, url, vacuum_analyze

TEMPLATE = "backfill_bench_contract"

FILL = """
from django.core.management import call_command
from django.db import connection, transaction
from organizations.backfills import AdminGroups
call_command("migrate", "organizations", "0005", verbosity=0)
call_command("seed_organizations", "--count", "{rows}", "--existing-groups", "1000", verbosity=0)
with connection.cursor() as cursor:
    cursor.execute("SELECT min(id), max(id) FROM organizations_organization")
    low, high = cursor.fetchone()
for start in range(low, high + 1, 50000):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(
            "SELECT id, name FROM organizations_organization WHERE id BETWEEN %s AND %s AND admin_id IS NULL",
            [start, start + 49999],
        )
        AdminGroups().fill(cursor, cursor.fetchall())
"""

CONTRACT = """
import json, time
from django.core.management import call_command
from django.db import connection
from backfill.schema.gaps import waiting
timings = []
def timed(execute, sql, params, many, context):
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        if sql.lstrip().upper().startswith("ALTER TABLE"):
            timings.append((" ".join(sql.split())[:90], round((time.perf_counter() - started) * 1000, 2)))
# Inside the gap waiter (backfill/schema/gaps.py), so that only the statements are timed,
# not the look at pg_locks before each.
with waiting(connection.alias), connection.execute_wrapper(timed):
    call_command("migrate", "organizations", "0006", verbosity=0)
print("TIMINGS" + json.dumps(timings))
"""


def build_template(rows: int) -> None:
    recreate(TEMPLATE)
    manage(TEMPLATE, "migrate", "-v0")
    shell(TEMPLATE, FILL.replace("{rows}", str(rows)))
    vacuum_analyze(TEMPLATE)


def plain_set_not_null(filled: str) -> float:
    db = copy_of(filled, f"{filled}_plain")
    try:
        with psycopg.connect(url(db), autocommit=True) as conn:
            conn.execute("SELECT count(*) FROM organizations_organization")  # warm the cache
            started = time.perf_counter()
            conn.execute(
                "ALTER TABLE organizations_organization ALTER COLUMN admin_id SET NOT NULL"
            )
            return (time.perf_counter() - started) * 1000
    finally:
        drop(db)


def enforce_not_null(filled: str) -> list[tuple[str, float]]:
    db = copy_of(filled, f"{filled}_safe")
    try:
        with psycopg.connect(url(db), autocommit=True) as conn:
            conn.execute("SELECT count(*) FROM organizations_organization")
        out = shell(db, CONTRACT)
        return [(str(s), float(ms)) for s, ms in json.loads(out.split("TIMINGS", 1)[1])]
    finally:
        drop(db)


@dataclass(frozen=True)
class ContractTimes:
    rows: int
    plain_set_not_null_ms: float
    enforce_not_null_longest_exclusive_ms: float
    enforce_not_null_validate_ms: float
    steps: list[tuple[str, float]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(filled: str, rows: int) -> ContractTimes:
    """Both ways, each on its own copy of `filled` (every row linked, column still nullable)."""
    plain = plain_set_not_null(filled)
    steps = enforce_not_null(filled)
    return ContractTimes(
        rows=rows,
        plain_set_not_null_ms=round(plain, 1),
        enforce_not_null_longest_exclusive_ms=max(ms for s, ms in steps if "VALIDATE" not in s),
        enforce_not_null_validate_ms=round(sum(ms for s, ms in steps if "VALIDATE" in s), 1),
        steps=steps,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    options = parser.parse_args()
    build_template(options.rows)
    times = measure(TEMPLATE, options.rows)
    with psycopg.connect(url(TEMPLATE)) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    exclusive = sum(1 for statement, _ in times.steps if "VALIDATE" not in statement)
    print(f"PostgreSQL {version[0] if version else '?'}, rows: {options.rows:,}")
    print(f"plain SET NOT NULL, ACCESS EXCLUSIVE held: {times.plain_set_not_null_ms:.1f} ms")
    for statement, ms in times.steps:
        print(f"  EnforceNotNull {ms:8.1f} ms  {statement}")
    print(
        f"EnforceNotNull, {exclusive} statement{'' if exclusive == 1 else 's'} under "
        "ACCESS EXCLUSIVE, the longest: "
        f"{times.enforce_not_null_longest_exclusive_ms:.1f} ms (validation scan "
        f"{times.enforce_not_null_validate_ms:.1f} ms under SHARE UPDATE EXCLUSIVE)"
    )


if __name__ == "__main__":
    main()
