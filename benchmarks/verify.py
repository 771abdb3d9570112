"""Is the admin-group link right after a run? Counts of every way it could be wrong.

    DATABASE_URL=... python -m benchmarks.verify --floor 1000 --digest 5f3c...

Prints one JSON object. Every count but `organizations`, `filled` and
`pending` must be zero: groups shared by several organizations, names that
break the rule (not "<first 50> Admin" or "<first 50> <k> Admin", or a k
whose smaller numbers were not all taken), groups made after `--floor`
that no organization links, organizations linked to a pre-existing group,
and pre-existing groups changed or deleted (`--digest`, see `digest()`).
"""

import argparse
import json
import os
from typing import Any

GROUPS_DIGEST_SQL = (
    "SELECT coalesce(md5(string_agg(id || ':' || name, ',' ORDER BY id)), '') "
    "FROM auth_group WHERE id <= %s"
)


def digest(cursor: Any, floor: int) -> str:
    cursor.execute(GROUPS_DIGEST_SQL, [floor])
    return str(cursor.fetchone()[0])


def verify(floor: int, expected_digest: str) -> dict[str, Any]:
    from django.db import connection

    from organizations import audit
    from organizations.models import Organization

    with connection.cursor() as cursor:
        counts = {
            "organizations": Organization.objects.count(),
            "filled": Organization.objects.filter(admin__isnull=False).count(),
            "shared_groups": audit.shared_groups(cursor),
            "orphan_groups": audit.orphan_groups(cursor, floor),
            "took_existing_group": audit.linked_to_existing(cursor, floor),
            "existing_groups_changed": int(digest(cursor, floor) != expected_digest),
        }
    counts["pending"] = counts["organizations"] - counts["filled"]
    counts["misnamed"] = audit.misnamed() + audit.skipped_numbers()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floor", type=int, required=True, help="highest pre-existing group id")
    parser.add_argument("--digest", required=True, help="digest of the pre-existing groups")
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    print(json.dumps(verify(options.floor, options.digest)))


if __name__ == "__main__":
    main()
