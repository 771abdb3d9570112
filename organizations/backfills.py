"""The organizations app's backfill definitions, found by the engine at startup."""

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import Group
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from backfill import Definition, ExpressionDefinition, register
from backfill.registry import Row
from organizations import audit, naming
from organizations.models import Organization

ORGANIZATIONS = Organization._meta.db_table
GROUPS = Group._meta.db_table
MEMBERSHIPS = Group.user_set.through._meta.db_table
PERMISSIONS = Group.permissions.through._meta.db_table


@register
class AdminGroups(Definition):
    """Every organization gets an administrators group of its own, named by the rule."""

    name = "admin_groups"
    model_label = "organizations.Organization"
    field_name = "admin"
    description = "Create each legacy organization's admin group and link it."
    columns = ("name",)

    def prepare(self, cursor: CursorWrapper) -> dict[str, Any]:
        """Groups with a higher id than today's highest were made after the job began.

        The counts are for audits: the groups that existed must all still be
        there, and no more organizations may link one than did at the start.
        """
        cursor.execute(
            sql.SQL("SELECT COALESCE(max(id), 0), count(*) FROM {}")
            .format(sql.Identifier(GROUPS))
            .as_string()
        )
        row = cursor.fetchone()
        floor, count = row if row else (0, 0)
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE admin_id IS NOT NULL")
            .format(sql.Identifier(ORGANIZATIONS))
            .as_string()
        )
        linked = cursor.fetchone()
        return {
            "group_id_floor": floor,
            "groups_at_start": count,
            "linked_at_start": linked[0] if linked else 0,
        }

    def fill(self, cursor: CursorWrapper, rows: Sequence[Row]) -> int:
        """One naming statement for the whole batch (more only on name clashes), one update."""
        claimed = naming.claim_admin_groups(cursor, [r[0] for r in rows], [r[1] for r in rows])
        cursor.execute(
            sql.SQL(
                "UPDATE {orgs} o SET admin_id = v.group_id "
                "FROM unnest(%s::bigint[], %s::int[]) AS v(id, group_id) WHERE o.id = v.id"
            )
            .format(orgs=sql.Identifier(ORGANIZATIONS))
            .as_string(),
            [list(claimed), list(claimed.values())],
        )
        return int(cursor.rowcount)

    def verify(self, cursor: CursorWrapper) -> list[str]:
        shared = audit.shared_groups(cursor)
        return [f"{shared} admin groups are shared by several organizations"] if shared else []

    def revert(self, cursor: CursorWrapper, context: dict[str, Any], low: int, high: int) -> int:
        floor = context.get("group_id_floor", 0)
        cursor.execute(REVERT_SQL, {"low": low, "high": high, "floor": floor})
        return int(cursor.rowcount)


# Unlink the organizations in [low, high] whose group the job made (an id above
# the highest one when the job started: never a pre-existing group), delete
# those groups with their memberships and permissions, and drop the naming
# counters of their bases, whose numbers are free again.
REVERT_SQL = (
    sql.SQL(
        """
WITH unlinked AS (
    UPDATE {orgs} o SET admin_id = NULL
    FROM {orgs} old
    WHERE o.id = old.id AND o.id BETWEEN %(low)s AND %(high)s AND o.admin_id > %(floor)s
    RETURNING old.admin_id AS group_id, left(o.name, {base_length}) AS base
),
members AS (DELETE FROM {memberships} WHERE group_id IN (SELECT group_id FROM unlinked)),
permissions AS (DELETE FROM {permissions} WHERE group_id IN (SELECT group_id FROM unlinked)),
counters AS (DELETE FROM {counter} WHERE base IN (SELECT base FROM unlinked))
DELETE FROM {groups} WHERE id IN (SELECT group_id FROM unlinked)
"""
    )
    .format(
        orgs=sql.Identifier(ORGANIZATIONS),
        groups=sql.Identifier(GROUPS),
        memberships=sql.Identifier(MEMBERSHIPS),
        permissions=sql.Identifier(PERMISSIONS),
        counter=sql.Identifier(naming.COUNTER_TABLE),
        base_length=sql.Literal(naming.BASE_LENGTH),
    )
    .as_string()
)


@register
class SearchNames(ExpressionDefinition):
    """A lower-case copy of the name for case-insensitive search."""

    name = "search_names"
    model_label = "organizations.Organization"
    field_name = "search_name"
    description = "Fill search_name with lower(name)."
    expression = "lower(name)"
