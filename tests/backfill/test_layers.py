"""Applying a migration loads no runtime: the schema steps stand on their own floor."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import migrations, models
from django.db.migrations.writer import MigrationWriter

import backfill.guard
import backfill.operations
from backfill import AddNullableField, EnforceNotNull, GuardFilledColumn

ROOT = Path(__file__).parents[2]

# The runtime a migration must not pull in: each starts threads, processes or
# connections of its own, or drags the rest of the engine behind it. (Celery
# itself is loaded by the project's package, as Celery's Django setup asks.)
RUNTIME = (
    "backfill.pacing",
    "backfill.engine.scheduler",
    "backfill.engine.runner",
    "backfill.engine.batch",
    "backfill.engine.service",
    "workers.tasks",
)

LOAD_AS_MIGRATE_DOES = """
import importlib, json, sys
import django
django.setup()
import backfill.guard
import backfill.operations
from backfill import AddNullableField, EnforceNotNull, GuardFilledColumn
import backfill.operations, backfill.guard
for name in (
    "organizations.migrations.0005_organization_admin_guard",
    "organizations.migrations.0006_organization_admin_contract",
    "examples.migrations.0002_measurement_unit_guard",
    "examples.migrations.0003_measurement_unit_contract",
):
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after_migration_imports() -> list[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AS_MIGRATE_DOES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_migration_operations_after_setup_loads_no_runtime_module():
    loaded = loaded_after_migration_imports()
    assert "backfill.schema.contract" in loaded  # the check would pass vacuously otherwise
    runtime = [m for m in loaded if any(m == r or m.startswith(r + ".") for r in RUNTIME)]
    assert runtime == []


def test_the_operations_first_paths_still_import_for_existing_migrations():
    assert backfill.guard.GuardFilledColumn is GuardFilledColumn
    assert backfill.operations.EnforceNotNull is EnforceNotNull
    assert backfill.operations.AddNullableField is AddNullableField


@pytest.mark.parametrize(
    "operation",
    [
        EnforceNotNull("organization", "admin", backfill="admin_groups"),
        GuardFilledColumn("organization", "admin"),
        AddNullableField("organization", "code", models.CharField(max_length=12, null=True)),
    ],
)
def test_migrations_name_the_operations_by_their_public_path(operation):
    migration = type("Migration", (migrations.Migration,), {"operations": [operation]})
    written = MigrationWriter(migration("0009_x", "organizations")).as_string()
    assert "import backfill\n" in written
    assert f"backfill.{type(operation).__name__}(" in written
    assert "backfill.schema" not in written


def test_the_latency_probe_process_loads_no_django():
    code = "import json, sys, backfill.pacing.probe; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert not [m for m in json.loads(done.stdout) if m == "django" or m.startswith("django.")]
