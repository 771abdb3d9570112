"""The expand step's operations: a nullable column added without blocking writes,
then the guard that keeps every filled row filled (guard.py).
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib.postgres.operations import NotInTransactionMixin
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.operations.base import Operation
from django.db.migrations.operations.fields import AddField
from django.db.migrations.state import ProjectState
from django.db.models import Field, Model
from psycopg import sql

from backfill.schema import gaps, guard
from backfill.schema.guard import GuardNames, install, remove

__all__ = ["AddNullableField", "GuardFilledColumn"]


class AddNullableField(NotInTransactionMixin, AddField):
    """Expand: add a nullable column, then its unique constraint and indexes concurrently.

    `AddField` would write ``ADD COLUMN … UNIQUE`` (or create the field's
    indexes) in the same statement, building the index under ACCESS
    EXCLUSIVE with every write of the table waiting. Here the column comes
    first (a catalog-only change), then each index is built CONCURRENTLY and a
    unique one attached as the constraint, under the names `AddField` would
    have given, so later migrations find them. Each step looks at the catalog
    first: a run cut off halfway is finished by running `migrate` again. The
    migration state is `AddField`'s. For relations, use django-pg-migration-tools'
    `SaferAddFieldForeignKey` / `SaferAddFieldOneToOne` (`makebackfill` does).
    """

    # Migrations name it by the public path, which survives moves inside the package.
    __module__ = "backfill"

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if not schema_editor.collect_sql:
            self._ensure_not_in_transaction(schema_editor)
        field = model._meta.get_field(self.name)
        assert isinstance(field, Field)
        if schema_editor.collect_sql or not column_exists(schema_editor, model, field):
            schema_editor.add_field(model, bare(field, model))
        if field.unique:
            self.add_unique_constraint(schema_editor, model, field)
        for statement in schema_editor._field_indexes_sql(model, field):  # type: ignore[attr-defined]
            # Django's own index statements for the field, made concurrent.
            concurrent = re.sub(
                r"^CREATE INDEX ", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ", str(statement)
            )
            self.build_index(schema_editor, statement.parts["name"], concurrent)

    def add_unique_constraint(
        self, schema_editor: BaseDatabaseSchemaEditor, model: type[Model], field: Field[Any, Any]
    ) -> None:
        table = str(model._meta.db_table)
        name = schema_editor._create_index_name(table, [field.column], suffix="_uniq")  # type: ignore[attr-defined]
        names = {"table": sql.Identifier(table), "name": sql.Identifier(name)}
        self.build_index(
            schema_editor,
            name,
            sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column})")
            .format(**names, column=sql.Identifier(str(field.column)))
            .as_string(),
        )
        if schema_editor.collect_sql or not constraint_exists(schema_editor, table, name):
            with gaps.waiting(schema_editor.connection.alias):
                schema_editor.execute(
                    sql.SQL("ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}")
                    .format(**names)
                    .as_string()
                )

    def build_index(
        self, schema_editor: BaseDatabaseSchemaEditor, name: Any, statement: str
    ) -> None:
        if not schema_editor.collect_sql:
            guard.drop_invalid_index(schema_editor, str(name).strip('"'))
        with guard.concurrent_build(schema_editor):
            schema_editor.execute(statement)

    def describe(self) -> str:
        return f"{super().describe()}, nullable, its indexes built concurrently"


def bare(field: Field[Any, Any], model: type[Model]) -> Field[Any, Any]:
    """The field as a plain nullable column: no unique constraint, no index."""
    name, _path, args, kwargs = field.deconstruct()
    kwargs.update(null=True, unique=False, db_index=False)
    column = field.__class__(*args, **kwargs)
    column.set_attributes_from_name(name)
    column.model = model
    return column


def column_exists(
    schema_editor: BaseDatabaseSchemaEditor, model: type[Model], field: Field[Any, Any]
) -> bool:
    with schema_editor.connection.cursor() as cursor:
        columns = schema_editor.connection.introspection.get_table_description(
            cursor, model._meta.db_table
        )
    return any(column.name == field.column for column in columns)


def constraint_exists(schema_editor: BaseDatabaseSchemaEditor, table: str, name: str) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) "
            "AND conname = %s)",
            [sql.Identifier(table).as_string(), name],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


class GuardFilledColumn(NotInTransactionMixin, Operation):
    """Expand: keep filled values of `model_name.name` and index its pending rows."""

    # Migrations name it by the public path, which survives moves inside the package.
    __module__ = "backfill"

    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str, name: str) -> None:
        self.model_name = model_name
        self.name = name

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return self.__class__.__qualname__, [], {"model_name": self.model_name, "name": self.name}

    def describe(self) -> str:
        return f"Keep filled values of {self.model_name}.{self.name} and index its empty rows"

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.model_name.lower()}_{self.name.lower()}_guard"

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        """Database objects only: the model state does not change."""

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        names = self.names(app_label, schema_editor, to_state)
        if names is not None:
            with gaps.waiting(schema_editor.connection.alias):
                install(schema_editor, names)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        names = self.names(app_label, schema_editor, from_state)
        if names is not None:
            with gaps.waiting(schema_editor.connection.alias):
                remove(schema_editor, names, keep_function=False)

    def names(
        self, app_label: str, schema_editor: BaseDatabaseSchemaEditor, state: ProjectState
    ) -> GuardNames | None:
        """The guard's objects on this database, or None where the model is not migrated."""
        model = state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return None
        if not schema_editor.collect_sql:
            self._ensure_not_in_transaction(schema_editor)
        return GuardNames.of(model, self.name, schema_editor)
