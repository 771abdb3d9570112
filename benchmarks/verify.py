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
from collections import defaultdict
from typing import Any

GROUPS_DIGEST_SQL = (
    "SELECT coalesce(md5(string_agg(id || ':' || name, ',' ORDER BY id)), '') "
    "FROM auth_group WHERE id <= %s"
)


def digest(cursor: Any, floor: int) -> str:
    cursor.execute(GROUPS_DIGEST_SQL, [floor])
    return str(cursor.fetchone()[0])


def scalar(cursor: Any, statement: str, params: list[Any]) -> int:
    cursor.execute(statement, params)
    return int(cursor.fetchone()[0])


def misnamed() -> int:
    """Links that break the rule, including numbers chosen over a smaller free one."""
    from django.contrib.auth.models import Group

    from organizations.models import Organization
    from organizations.naming import admin_group_name, name_base, number_in

    highest: dict[str, int] = defaultdict(int)
    broken = 0
    linked = Organization.objects.filter(admin__isnull=False).values_list("name", "admin__name")
    for name, group in linked.iterator(chunk_size=20000):
        number = number_in(group, name)
        if number is None:
            broken += 1
        else:
            base = name_base(name)
            highest[base] = max(highest[base], number)
    taken = set(Group.objects.values_list("name", flat=True).iterator(chunk_size=20000))
    for base, number in highest.items():
        broken += sum(1 for k in range(number) if admin_group_name(base, k) not in taken)
    return broken


def verify(floor: int, expected_digest: str) -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        counts = {
            "organizations": scalar(cursor, "SELECT count(*) FROM organizations_organization", []),
            "filled": scalar(
                cursor,
                "SELECT count(*) FROM organizations_organization WHERE admin_id IS NOT NULL",
                [],
            ),
            "shared_groups": scalar(
                cursor,
                "SELECT count(*) FROM (SELECT admin_id FROM organizations_organization "
                "WHERE admin_id IS NOT NULL GROUP BY admin_id HAVING count(*) > 1) AS s",
                [],
            ),
            "orphan_groups": scalar(
                cursor,
                "SELECT count(*) FROM auth_group g WHERE g.id > %s AND NOT EXISTS "
                "(SELECT 1 FROM organizations_organization o WHERE o.admin_id = g.id)",
                [floor],
            ),
            "took_existing_group": scalar(
                cursor,
                "SELECT count(*) FROM organizations_organization WHERE admin_id <= %s",
                [floor],
            ),
            "existing_groups_changed": int(digest(cursor, floor) != expected_digest),
        }
    counts["pending"] = counts["organizations"] - counts["filled"]
    counts["misnamed"] = misnamed()
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
