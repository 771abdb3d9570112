"""The seeded databases every run copies: legacy organizations, some of them skewed.

Seeding takes minutes and copying seconds (CREATE DATABASE ... TEMPLATE), so
each table is seeded once and every run starts from an identical copy of it.
"""

from dataclasses import dataclass

import psycopg

from benchmarks.databases import manage, recreate, url, vacuum_analyze
from benchmarks.verify import digest

PREFIX = "backfill_bench"
# Groups that already hold admin names, which the backfill must neither take nor change.
EXISTING_GROUPS = 1000
# The skewed table: this share of the rows all carry one name.
HOT_SHARE = 0.2
SKEWED = "skewed"


@dataclass(frozen=True)
class Template:
    """A seeded database that copies are made from, and what verifies a copy of it."""

    db: str
    rows: int
    group_floor: int
    groups_digest: str


def seed(rows: int, hot_share: float = 0.0) -> Template:
    """Legacy organizations at the migration before the admin column is filled."""
    db = recreate(f"{PREFIX}_{rows}" + (f"_{SKEWED}" if hot_share else ""))
    manage(db, "migrate", "-v0")
    manage(db, "migrate", "organizations", "0005", "-v0")
    manage(
        db,
        "seed_organizations",
        f"--count={rows}",
        f"--existing-groups={EXISTING_GROUPS}",
        f"--hot-share={hot_share}",
    )
    vacuum_analyze(db)
    with psycopg.connect(url(db)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM auth_group")
        floor = int(cursor.fetchone()[0])  # type: ignore[index]
        return Template(db, rows, floor, digest(cursor, floor))
