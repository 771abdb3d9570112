"""Counts of every way the admin-group guarantees could be broken: zero when sound.

One place for the definition's `verify` (the contract's gate), the test
suite's invariants and the benchmark's verification, so the three can never
disagree on what "sound" means.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.contrib.auth.models import Group
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from organizations import naming
from organizations.models import Organization

ORGANIZATIONS = sql.Identifier(Organization._meta.db_table)
GROUPS = sql.Identifier(Group._meta.db_table)


def scalar(cursor: CursorWrapper, statement: sql.Composable, params: Sequence[int] = ()) -> int:
    cursor.execute(statement.as_string(), list(params))
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def shared_groups(cursor: CursorWrapper) -> int:
    """Groups linked by more than one organization."""
    return scalar(
        cursor,
        sql.SQL(
            "SELECT count(*) FROM (SELECT admin_id FROM {orgs} WHERE admin_id IS NOT NULL "
            "GROUP BY admin_id HAVING count(*) > 1) AS shared"
        ).format(orgs=ORGANIZATIONS),
    )


def orphan_groups(cursor: CursorWrapper, floor: int) -> int:
    """Groups made after `floor` (the highest id when a job started) that no one links."""
    return scalar(
        cursor,
        sql.SQL(
            "SELECT count(*) FROM {groups} g WHERE g.id > %s AND NOT EXISTS "
            "(SELECT 1 FROM {orgs} o WHERE o.admin_id = g.id)"
        ).format(groups=GROUPS, orgs=ORGANIZATIONS),
        [floor],
    )


def linked_to_existing(cursor: CursorWrapper, floor: int) -> int:
    """Organizations linked to a group that existed when the job started."""
    return scalar(
        cursor,
        sql.SQL("SELECT count(*) FROM {orgs} WHERE admin_id <= %s").format(orgs=ORGANIZATIONS),
        [floor],
    )


def misnamed(exclude: Iterable[int] = ()) -> int:
    """Links whose group name the rule cannot have given the organization's name."""
    linked = (
        Organization.objects.exclude(pk__in=list(exclude))
        .filter(admin__isnull=False)
        .values_list("name", "admin__name")
    )
    return sum(
        1
        for name, group in linked.iterator(chunk_size=20000)
        if naming.number_in(group, name) is None
    )


def skipped_numbers() -> int:
    """Numbers below a base's highest one in use whose name is free: k was not the smallest."""
    highest: dict[str, int] = defaultdict(int)
    linked = Organization.objects.filter(admin__isnull=False).values_list("name", "admin__name")
    for name, group in linked.iterator(chunk_size=20000):
        number = naming.number_in(group, name)
        if number is not None:
            base = naming.name_base(name)
            highest[base] = max(highest[base], number)
    taken = set(Group.objects.values_list("name", flat=True).iterator(chunk_size=20000))
    return sum(
        1
        for base, number in highest.items()
        for k in range(number)
        if naming.admin_group_name(base, k) not in taken
    )
