"""`makebackfill` on a throw-away app: scaffold, migrate, plan, backfill, migrate, by the commands.

The app (`parcels`) is written to a temporary folder and installed by a
settings module beside it, so that every step runs as a user runs it: in a
`manage.py` process of its own, and in real Celery workers.
"""

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.processes import ROOT, manage, wait_for, worker_environment

pytestmark = pytest.mark.django_db(transaction=True)

APP = "parcels"
TABLE = "parcels_parcel"
MODEL = """from django.db import models


class Parcel(models.Model):
    weight = models.IntegerField()
"""
SETTINGS = f"""from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "{APP}"]  # noqa: F405
"""
MIGRATE = (
    "migrate_with_timeouts",
    "--lock-timeout-in-ms",
    "100",
    "--lock-timeout-max-retries",
    "10",
)


@dataclass
class ScratchApp:
    folder: Path

    @property
    def app(self) -> Path:
        return self.folder / APP

    @property
    def environment(self) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": "parcels_settings",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(self.folder)]),
        }

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return manage(*args, env={**worker_environment(), **self.environment})

    def declare(self, line: str) -> None:
        """Add a field to the model, as the developer does before `makebackfill`."""
        models = self.app / "models.py"
        models.write_text(models.read_text() + f"    {line}\n")

    def files(self) -> set[str]:
        return {str(path.relative_to(self.app)) for path in self.app.rglob("*.py")}


def sql(statement: str, params: list[str] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[ScratchApp]:
    """The parcels app with its table migrated and 20,000 rows; all of it dropped afterwards."""
    scratch = ScratchApp(tmp_path)
    (scratch.app / "migrations").mkdir(parents=True)
    (scratch.app / "__init__.py").write_text("")
    (scratch.app / "migrations" / "__init__.py").write_text("")
    (scratch.app / "models.py").write_text(MODEL)
    (tmp_path / "parcels_settings.py").write_text(SETTINGS)
    try:
        for step in (("makemigrations", APP), (*MIGRATE, APP)):
            result = scratch.manage(*step)
            assert result.returncode == 0, result.stderr
        sql(f"INSERT INTO {TABLE} (weight) SELECT g % 100 FROM generate_series(1, 20000) g")
        sql(f"ANALYZE {TABLE}")
        yield scratch
    finally:
        sql(f"DROP TABLE IF EXISTS {TABLE} CASCADE")
        for (function,) in sql(
            "SELECT oid::regproc::text FROM pg_proc WHERE proname LIKE %s", [f"{TABLE}%"]
        ):
            sql(f"DROP FUNCTION IF EXISTS {function}()")
        sql("DELETE FROM django_migrations WHERE app = %s", [APP])


def column_nullable(column: str) -> bool | None:
    rows = sql(
        "SELECT is_nullable = 'YES' FROM information_schema.columns "
        "WHERE table_name = %s AND column_name = %s",
        [TABLE, column],
    )
    return bool(rows[0][0]) if rows else None


def applied() -> list[str]:
    return [
        name
        for (name,) in sql("SELECT name FROM django_migrations WHERE app = %s ORDER BY id", [APP])
    ]


def wait_until_succeeded(scratch: ScratchApp, name: str) -> dict[str, object]:
    def final_status() -> dict[str, object] | None:
        status = scratch.manage("backfill", "status", name, "--json")
        assert status.returncode == 0, status.stderr
        progress = dict(json.loads(status.stdout))
        return progress if progress["status"] in {"succeeded", "failed", "cancelled"} else None

    return wait_for(final_status, timeout=120, interval=0.5)


@pytest.mark.workers
def test_a_new_required_column_from_scaffold_to_not_null_through_the_commands(
    scratch: ScratchApp, start_worker
):
    scratch.declare("size = models.CharField(max_length=5)")
    made = scratch.manage(
        "makebackfill",
        f"{APP}.Parcel",
        "size",
        "--expression",
        "CASE WHEN weight >= 50 THEN 'large' ELSE 'small' END",
    )
    assert made.returncode == 0, made.stderr
    assert {
        "migrations/0002_parcel_size_expand.py",
        "migrations/0003_parcel_size_contract.py",
        "backfills.py",
    } <= scratch.files()
    check = scratch.manage("makemigrations", "--check", "--dry-run", APP)
    assert check.returncode == 0, check.stdout + check.stderr

    # Expand applies; the contract refuses while every row is empty, changing nothing.
    refused = scratch.manage(*MIGRATE, APP)
    assert refused.returncode != 0
    assert "20,000 rows of parcels.Parcel.size are still empty" in refused.stderr
    assert applied() == ["0001_initial", "0002_parcel_size_expand"]
    assert column_nullable("size") is True
    assert sql(f"SELECT count(*) FROM {TABLE} WHERE size IS NULL") == [(20_000,)]

    planned = scratch.manage("backfill", "plan", "parcel_size", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert (plan["pending"], plan["pending_is_estimate"]) == (20_000, False)
    assert plan["batch_plan"]
    assert plan["sample_rows"] > 0
    assert plan["rows_per_second"] > 0
    assert [p["workers"] for p in plan["projections"]] == [1, 2, 4]
    assert plan["projections"][0]["seconds"] > plan["projections"][2]["seconds"] > 0
    assert sql(f"SELECT count(*) FROM {TABLE} WHERE size IS NULL") == [(20_000,)]  # rolled back

    workers = {"extra_env": scratch.environment}
    start_worker(**workers)
    start_worker(**workers)
    started = scratch.manage("backfill", "start", "parcel_size", "--concurrency", "2")
    assert started.returncode == 0, started.stderr
    assert wait_until_succeeded(scratch, "parcel_size")["status"] == "succeeded"

    enforced = scratch.manage(*MIGRATE, APP)
    assert enforced.returncode == 0, enforced.stderr
    assert applied()[-1] == "0003_parcel_size_contract"
    assert column_nullable("size") is False
    assert sql(
        f"SELECT count(*) FROM {TABLE} WHERE size IS DISTINCT FROM "
        "CASE WHEN weight >= 50 THEN 'large' ELSE 'small' END"
    ) == [(0,)]
    assert scratch.manage("makemigrations", "--check", "--dry-run", APP).returncode == 0


def test_relations_and_unique_columns_are_added_without_long_locks(scratch: ScratchApp):
    """A one-to-one link and a unique code: indexes built concurrently, the key NOT VALID then validated."""
    scratch.declare(
        "admins = models.OneToOneField('auth.Group', on_delete=models.PROTECT, related_name='+')"
    )
    scratch.declare("code = models.CharField(max_length=12, unique=True)")
    for field in ("admins", "code"):
        made = scratch.manage("makebackfill", f"{APP}.Parcel", field)
        assert made.returncode == 0, made.stderr
    assert scratch.manage("makemigrations", "--check", "--dry-run", APP).returncode == 0
    statements = scratch.manage("sqlmigrate", APP, "0004").stdout  # the code's expand
    assert 'ADD COLUMN "code" varchar(12) NULL;' in statements
    assert "CREATE UNIQUE INDEX CONCURRENTLY" in statements
    assert "UNIQUE USING INDEX" in statements

    # Each expand applies; the first contract then refuses (nothing filled).
    assert scratch.manage(*MIGRATE, APP, "0002").returncode == 0
    assert scratch.manage(*MIGRATE, APP, "0003").returncode != 0
    sql(f"INSERT INTO auth_group (name) SELECT 'parcel ' || id FROM {TABLE}")
    sql(f"UPDATE {TABLE} p SET admins_id = g.id FROM auth_group g WHERE g.name = 'parcel ' || p.id")
    assert scratch.manage(*MIGRATE, APP, "0004").returncode == 0
    constraints: dict[str, int] = dict(
        sql(
            "SELECT contype::text || CASE WHEN convalidated THEN '' ELSE ' not valid' END, "
            # PostgreSQL 18 lists NOT NULLs here too (contype 'n'): column_nullable reads them.
            "count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype <> 'n' "
            "GROUP BY 1",
            [TABLE],
        )
    )
    assert constraints == {"p": 1, "f": 1, "u": 2}  # the key, the link's, its unique and the code's
    assert column_nullable("admins_id") is False
    assert column_nullable("code") is True
    invalid = sql(
        "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND NOT indisvalid", [TABLE]
    )
    assert invalid == [(0,)]
    definitions = (scratch.app / "backfills.py").read_text()
    compile(definitions, "backfills.py", "exec")
    assert definitions.count("(Definition):") == 2  # skeletons, no expression given
    assert definitions.count("def fill(self, cursor, rows):") == 2


@pytest.mark.parametrize(
    ("declaration", "field", "message"),
    [
        ("size = models.CharField(max_length=5, null=True)", "size", "is nullable"),
        ("size = models.CharField(max_length=5, default='s')", "size", "has a default"),
        ("size = models.CharField(max_length=5, db_default='s')", "size", "has a default"),
        (None, "weight", "column weight already exists in parcels_parcel"),
        (
            "double = models.GeneratedField(expression=models.F('weight') * 2, "
            "output_field=models.IntegerField(), db_persist=True)",
            "double",
            "is a GeneratedField",
        ),
        (None, "nothing", "has no field 'nothing'"),
        (
            "size = models.CharField(max_length=5)",
            "size --name Bad-Name",
            "backfill name 'Bad-Name'",
        ),
        ("size = models.CharField(max_length=5)", "size --name admin_groups", "exists already"),
    ],
)
def test_a_field_that_cannot_be_scaffolded_is_refused_in_one_line_writing_nothing(
    scratch: ScratchApp, declaration: str | None, field: str, message: str
):
    if declaration is not None:
        scratch.declare(declaration)
    before = scratch.files()
    result = scratch.manage("makebackfill", f"{APP}.Parcel", *field.split())
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert scratch.files() == before


UNMANAGED = """

class ParcelView(models.Model):
    weight = models.IntegerField()
    size = models.CharField(max_length=5)

    class Meta:
        managed = False
        db_table = "parcels_parcel"
"""


def test_an_unmanaged_model_is_refused_in_one_line_writing_nothing(scratch: ScratchApp):
    models = scratch.app / "models.py"
    models.write_text(models.read_text() + UNMANAGED)
    before = scratch.files()
    result = scratch.manage("makebackfill", f"{APP}.ParcelView", "size")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "CommandError: parcels.ParcelView is not managed by Django (Meta.managed = False): "
        "its table is not Django's to migrate"
    )
    assert scratch.files() == before
    assert column_nullable("size") is None


def test_an_unknown_model_is_refused(scratch: ScratchApp):
    result = scratch.manage("makebackfill", f"{APP}.Nothing", "size")
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "CommandError: no model 'parcels.Nothing': give it as app_label.ModelName",
    )
