"""The two alternatives to the service, each one pass in one transaction.

    DATABASE_URL=... python -m benchmarks.passes textbook --sample 20000
    DATABASE_URL=... python -m benchmarks.passes set-based

- `textbook`: what a `RunPython` data migration usually looks like: the
  historical models, one organization at a time through the ORM, probing
  for the first free group name with one query per candidate, inside the
  migration's single transaction. It stops after `--sample` rows, since the
  whole table would take hours; the benchmark extrapolates.
- `set-based`: every pending row in one `SELECT`, then the naming statement the
  service uses for a batch, applied to all rows at once, and one `UPDATE`: the
  speed limit of a single statement, still in one transaction.

Each prints one JSON line: rows, seconds, the process's peak memory and its
progress over time (wall clock, rows done).
"""

import argparse
import json
import os
import resource
import time
from typing import Any

PROGRESS_EVERY = 1000


def textbook(sample: int) -> dict[str, Any]:
    from django.db import connection, transaction
    from django.db.migrations.loader import MigrationLoader

    from organizations.naming import admin_group_name

    state = MigrationLoader(connection).project_state(
        ("organizations", "0004_organization_search_name_expand")
    )
    organization_model = state.apps.get_model("organizations", "Organization")
    group_model = state.apps.get_model("auth", "Group")
    progress = [(time.time(), 0)]
    done = 0
    with transaction.atomic():
        pending = organization_model.objects.filter(admin__isnull=True).order_by("pk")
        for organization in pending[:sample]:
            number = 0
            while group_model.objects.filter(
                name=admin_group_name(organization.name, number)
            ).exists():
                number += 1
            organization.admin = group_model.objects.create(
                name=admin_group_name(organization.name, number)
            )
            organization.save(update_fields=["admin"])
            done += 1
            if done % PROGRESS_EVERY == 0:
                progress.append((time.time(), done))
    progress.append((time.time(), done))
    return {"rows": done, "progress": progress}


def set_based() -> dict[str, Any]:
    from django.db import connection, transaction

    from organizations.backfills import AdminGroups

    started = time.time()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(
            "SELECT id, name FROM organizations_organization WHERE admin_id IS NULL ORDER BY id"
        )
        rows = cursor.fetchall()
        filled = AdminGroups().fill(cursor, rows)
    return {"rows": filled, "progress": [(started, 0), (time.time(), filled)]}


def peak_rss_mb() -> float:
    """Linux reports ru_maxrss in kilobytes."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("approach", choices=["textbook", "set-based"])
    parser.add_argument("--sample", type=int, default=20000, help="rows for the textbook pass")
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    result = textbook(options.sample) if options.approach == "textbook" else set_based()
    progress = result["progress"]
    result["seconds"] = round(progress[-1][0] - progress[0][0], 3)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
