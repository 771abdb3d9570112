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
    # Every organization whose name starts alike draws its number from one
    # counter row and competes for the same group names: one slice has them all.
    partition_key = f"left(name, {naming.BASE_LENGTH})"
    partition_label = "names"

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

    def revert(
        self, cursor: CursorWrapper, context: dict[str, Any], writes: Sequence[tuple[str, str]]
    ) -> int:
        """Unlink the organizations that still hold the group the job gave them, then
        delete those groups unless someone else uses them (an organization, a member,
        a permission): what the app made or added survives.

        The deleted names are listed as freed by the trigger on `auth_group`, in this
        transaction (migration 0008): no counter is touched, so a creation racing this
        batch needs no lock to leave the smallest free number to the next one."""
        cursor.execute(
            UNLINK_SQL, {"keys": [k for k, _ in writes], "groups": [v for _, v in writes]}
        )
        unlinked = int(cursor.rowcount)
        cursor.execute(DELETE_UNUSED_GROUPS_SQL, {"groups": [v for _, v in writes]})
        return unlinked


UNLINK_SQL = (
    sql.SQL(
        "UPDATE {orgs} o SET admin_id = NULL "
        "FROM unnest(%(keys)s::text[], %(groups)s::text[]) AS w(key, group_id) "
        "WHERE o.id = w.key::bigint AND o.admin_id = w.group_id::int"
    )
    .format(orgs=sql.Identifier(ORGANIZATIONS))
    .as_string()
)

# Groups the job made that nothing uses any more.
DELETE_UNUSED_GROUPS_SQL = (
    sql.SQL(
        """
DELETE FROM {groups} g
WHERE g.id = ANY(%(groups)s::int[])
  AND NOT EXISTS (SELECT 1 FROM {orgs} o WHERE o.admin_id = g.id)
  AND NOT EXISTS (SELECT 1 FROM {memberships} m WHERE m.group_id = g.id)
  AND NOT EXISTS (SELECT 1 FROM {permissions} p WHERE p.group_id = g.id)
"""
    )
    .format(
        orgs=sql.Identifier(ORGANIZATIONS),
        groups=sql.Identifier(GROUPS),
        memberships=sql.Identifier(MEMBERSHIPS),
        permissions=sql.Identifier(PERMISSIONS),
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
