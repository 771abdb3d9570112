"""Triggers that keep the freed-names list exact and leave no admin group orphaned.

On `auth_group`, statement-level triggers over transition tables: a deleted
or renamed group lists its name as freed for every base whose rule gives it
("Acme 1 Admin" is k=0 of "Acme 1" and k=1 of "Acme"); an inserted or renamed
group strikes its name off. They run in the transaction that frees or takes
the name, whoever does it (the app, a revert, raw SQL, the admin site), so no
lock is needed to keep the list exact. On the organizations table, a deleted
organization's admin group goes with it, with its memberships and
permissions, unless another organization links it: a raw SQL `DELETE`
orphans nothing, and the ORM's delete is the same single statement.

The SQL is written out here, not imported, so this migration keeps meaning
what it meant. Non-atomic: each CREATE TRIGGER (SHARE ROW EXCLUSIVE on its
table, for milliseconds) waits for a gap in the table's locks and attempts
under a short lock timeout (backfill/schema/gaps.py), so app writes never
queue behind it.
"""

from typing import Any

from django.conf import settings
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from psycopg import sql

from backfill.schema import gaps

BASE_LENGTH = 50
# Each freed name with every (base, number) whose rule gives it.
CLAIMANTS = """
    SELECT c.base, c.number, t.name
    FROM freed_names AS t
    CROSS JOIN LATERAL (SELECT left(t.name, -6) AS prefix) AS p
    CROSS JOIN LATERAL (
        SELECT p.prefix AS base, 0 AS number
        WHERE char_length(p.prefix) <= {base_length}
        UNION ALL
        SELECT m[1], m[2]::integer
        FROM regexp_match(p.prefix, '^(.*) ([1-9][0-9]{{0,8}})$') AS m
        WHERE char_length(m[1]) <= {base_length}
    ) AS c
    WHERE right(t.name, 6) = ' Admin'
"""

FREED_FUNCTION = (
    "CREATE OR REPLACE FUNCTION {freed_fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO {freed} (base, number, name) "
    + CLAIMANTS
    + " ORDER BY 1, 2 ON CONFLICT DO NOTHING; RETURN NULL; END $$"
)

# Most batches take names while nothing is listed: one index probe. Otherwise
# one probe of the name index per name taken, nothing parsed.
TAKEN_FUNCTION = (
    "CREATE OR REPLACE FUNCTION {taken_fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF EXISTS (SELECT 1 FROM {freed}) THEN "
    "DELETE FROM {freed} f WHERE f.name IN (SELECT t.name FROM taken_names t); "
    "END IF; RETURN NULL; END $$"
)

# Runs after the organizations are gone, so "another organization links it" is
# read without them; one statement, so the three deletes see the same rows.
DROP_GROUPS_FUNCTION = """
CREATE OR REPLACE FUNCTION {drop_fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    WITH doomed AS (
        SELECT DISTINCT o.{admin} AS id FROM gone_organizations o
        WHERE o.{admin} IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM {orgs} k WHERE k.{admin} = o.{admin})
    ),
    members AS (
        DELETE FROM {memberships} m USING doomed d WHERE m.{membership_group} = d.id
    ),
    grants AS (
        DELETE FROM {permissions} p USING doomed d WHERE p.{permission_group} = d.id
    )
    DELETE FROM {groups} g USING doomed d WHERE g.id = d.id;
    RETURN NULL;
END $$
"""

TRIGGERS = [
    ("{freed_on_delete}", "DELETE", "{groups}", "OLD TABLE AS freed_names", "{freed_fn}"),
    ("{freed_on_update}", "UPDATE", "{groups}", "OLD TABLE AS freed_names", "{freed_fn}"),
    ("{taken_on_insert}", "INSERT", "{groups}", "NEW TABLE AS taken_names", "{taken_fn}"),
    # Fires after the one above on a rename (triggers fire in name order).
    ("{taken_on_update}", "UPDATE", "{groups}", "NEW TABLE AS taken_names", "{taken_fn}"),
    ("{drop_on_delete}", "DELETE", "{orgs}", "OLD TABLE AS gone_organizations", "{drop_fn}"),
]
FUNCTIONS = ("{freed_fn}", "{taken_fn}", "{drop_fn}")


def identifiers(apps: Any) -> dict[str, sql.Composable]:
    """Every name the statements use, from this migration's historical models."""
    group = apps.get_model("auth", "Group")
    user = apps.get_model(settings.AUTH_USER_MODEL)
    memberships = user._meta.get_field("groups").remote_field.through
    permissions = group._meta.get_field("permissions").remote_field.through
    organization = apps.get_model("organizations", "Organization")
    names = {
        "groups": group._meta.db_table,
        "orgs": organization._meta.db_table,
        "admin": organization._meta.get_field("admin").column,
        "freed": apps.get_model("organizations", "FreedAdminName")._meta.db_table,
        "memberships": memberships._meta.db_table,
        "membership_group": memberships._meta.get_field("group").column,
        "permissions": permissions._meta.db_table,
        "permission_group": permissions._meta.get_field("group").column,
        "freed_fn": "organizations_admin_names_freed",
        "taken_fn": "organizations_admin_names_taken",
        "drop_fn": "organizations_drop_admin_groups",
        "freed_on_delete": "organizations_admin_names_freed_on_delete",
        "freed_on_update": "organizations_admin_names_freed_on_update",
        "taken_on_insert": "organizations_admin_names_taken_on_insert",
        "taken_on_update": "organizations_admin_names_taken_on_update",
        "drop_on_delete": "organizations_drop_admin_groups_on_delete",
    }
    found: dict[str, sql.Composable] = {k: sql.Identifier(v) for k, v in names.items()}
    found["base_length"] = sql.Literal(BASE_LENGTH)
    return found


def install_statements(apps: Any) -> list[str]:
    ids = identifiers(apps)
    statements = [FREED_FUNCTION, TAKEN_FUNCTION, DROP_GROUPS_FUNCTION] + [
        f"CREATE OR REPLACE TRIGGER {name} AFTER {event} ON {table} "
        f"REFERENCING {table_as} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        for name, event, table, table_as, function in TRIGGERS
    ]
    return [sql.SQL(s).format(**ids).as_string() for s in statements]


def remove_statements(apps: Any) -> list[str]:
    ids = identifiers(apps)
    statements = [f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, _, table, _, _ in TRIGGERS]
    statements += [f"DROP FUNCTION IF EXISTS {function}()" for function in FUNCTIONS]
    return [sql.SQL(s).format(**ids).as_string() for s in statements]


class AdminNameTriggers(Operation):
    """Install the triggers forwards, drop them backwards; the model state does not change."""

    reversible = True
    reduces_to_sql = True

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return self.__class__.__qualname__, [], {}

    def describe(self) -> str:
        return "Keep the freed admin names exact and drop an organization's group with it"

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        """Database objects only."""

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        self.run(schema_editor, to_state, backwards=False)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        self.run(schema_editor, from_state, backwards=True)

    def run(
        self, schema_editor: BaseDatabaseSchemaEditor, state: ProjectState, backwards: bool
    ) -> None:
        organization = state.apps.get_model("organizations", "Organization")
        if not self.allow_migrate_model(schema_editor.connection.alias, organization):
            return
        statements = (remove_statements if backwards else install_statements)(state.apps)
        with gaps.waiting(schema_editor.connection.alias):
            for statement in statements:
                schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("organizations", "0007_freedadminname"),
    ]

    operations = [AdminNameTriggers()]
