"""Fill the organizations table with legacy rows, as if they predated the expand step.

Set-based in one INSERT ... SELECT over generate_series, so a million rows take
seconds. The names mimic a real table: most unique, a share repeated (a few
very often), long names that only differ after the 50th character, and
non-Latin scripts.
"""

import random
from typing import Any

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from psycopg import sql

from backfill.management.arguments import fraction, non_negative_int, positive_int
from organizations import naming
from organizations.models import Organization

# 50 characters exactly: every name built on it shares one base.
LONG_PREFIX = "Northwind Traders International Holdings Group Ltd"
SHARED_POOL = 1000
# What a fifth of a real table is often called.
HOT_NAME = "My Company"

# Row i gets the one hot name with probability `hot`, else a shared name with
# probability `share`; shared names are skewed (random()^2) so a few are very
# common; one pool slot in five is a long name whose differences come after
# the 50th character. (The hot draw comes last, so a seed without hot rows is
# the same table as before the option existed.)
SEED_SQL = """
INSERT INTO {table} (name, created_at, updated_at)
SELECT CASE
         WHEN s.hot THEN {hot_name}
         WHEN s.shared AND mod(s.slot, 5) = 0 THEN {long_prefix} || ' branch ' || s.i
         WHEN s.shared THEN 'Shared Org ' || s.slot
         WHEN mod(s.i, 10) = 0 THEN 'Организация ' || s.i
         WHEN mod(s.i, 10) = 1 THEN '株式会社 ' || s.i
         ELSE 'Organization ' || s.i || ' ' || substr(md5(s.i::text), 1, 6)
       END,
       now(), now()
FROM (
    SELECT g.i, random() < {share} AS shared,
           floor({pool} * random() ^ 2)::int AS slot,
           random() < {hot} AS hot
    FROM generate_series(1, {count}) AS g(i)
) AS s
"""


class Command(BaseCommand):
    help = "Insert N legacy organizations without admin groups (set-based, fast)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=positive_int, required=True, help="rows to insert")
        parser.add_argument(
            "--duplicate-share",
            type=fraction,
            default=0.1,
            help="share of rows whose name is also used by other rows (default 0.1)",
        )
        parser.add_argument(
            "--hot-share",
            type=fraction,
            default=0.0,
            help=f"share of rows that all carry one name, {HOT_NAME!r} (default 0)",
        )
        parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        parser.add_argument(
            "--existing-groups",
            type=non_negative_int,
            default=0,
            help="also create groups that occupy admin names of shared names "
            "('Shared Org 7 Admin', 'Shared Org 7 1 Admin'), as users might have",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["count"]
        if self.admin_is_required():
            raise CommandError(
                "organizations.admin is already required (contract migration 0005 applied), so "
                "legacy rows cannot exist; run `manage.py migrate organizations 0004` first"
            )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT setseed(%s)", [self.normalised_seed(options["seed"])])
            cursor.execute(
                self.seed_statement(),
                {"share": options["duplicate_share"], "hot": options["hot_share"], "count": count},
            )
            self.create_existing_groups(options["existing_groups"], options["seed"])
        self.stdout.write(f"Inserted {count:,} organizations without admin group.")
        self.report()

    @staticmethod
    def normalised_seed(seed: int) -> float:
        """setseed() takes a value in [-1, 1]."""
        return random.Random(seed).uniform(-1.0, 1.0)

    @staticmethod
    def seed_statement() -> str:
        return (
            sql.SQL(SEED_SQL)
            .format(
                table=sql.Identifier(Organization._meta.db_table),
                long_prefix=sql.Literal(LONG_PREFIX),
                pool=sql.Literal(SHARED_POOL),
                share=sql.Placeholder("share"),
                hot=sql.Placeholder("hot"),
                hot_name=sql.Literal(HOT_NAME),
                count=sql.Placeholder("count"),
            )
            .as_string()
        )

    @staticmethod
    def create_existing_groups(count: int, seed: int) -> None:
        rng = random.Random(seed)
        names: set[str] = set()
        while len(names) < count:
            base = f"Shared Org {rng.randrange(SHARED_POOL)}"
            names.add(naming.admin_group_name(base, rng.choice([0, 0, 1, 2, 3])))
            if len(names) >= SHARED_POOL * 2:
                break
        Group.objects.bulk_create([Group(name=n) for n in sorted(names)], ignore_conflicts=True)

    def report(self) -> None:
        """Counts; the pending one only once the expand migration added the column."""
        total = Organization.objects.count()
        if not self.admin_column_exists():
            self.stdout.write(f"Organizations: {total:,} in all (no admin column yet).")
            return
        pending = Organization.objects.filter(admin__isnull=True).count()
        self.stdout.write(f"Organizations: {total:,} in all, {pending:,} without admin group.")

    @staticmethod
    def admin_column() -> Any:
        """The admin column as the database describes it, or None before the expand step."""
        table = Organization._meta.db_table
        column = Organization._meta.get_field("admin").column
        with connection.cursor() as cursor:
            description = connection.introspection.get_table_description(cursor, table)
        return next((col for col in description if col.name == column), None)

    def admin_column_exists(self) -> bool:
        return self.admin_column() is not None

    def admin_is_required(self) -> bool:
        column = self.admin_column()
        return column is not None and not column.null_ok
