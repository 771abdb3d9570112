"""Migration operations: make a backfilled column required, safely.

`EnforceNotNull` is the contract step. It reads the column first and refuses,
changing nothing, while any row is still empty. Otherwise it sets NOT NULL the
way that holds ACCESS EXCLUSIVE only for milliseconds, through
django-pg-migration-tools' `NullsManager` (the same library as the expand
step): ``ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID``, ``VALIDATE
CONSTRAINT`` (the scan, under SHARE UPDATE EXCLUSIVE), ``SET NOT NULL``
(PostgreSQL skips its scan thanks to the valid check), then drop the check.
Each statement waits for a gap in the table's locks without queueing, then
attempts under a short lock timeout (ddl.py), so a long transaction on the
table delays the contract, never the app; since every step first looks at
the catalog, a later `migrate` carries on where one that gave up stopped.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.contrib.postgres.operations import NotInTransactionMixin
from django.db import connections
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.operations.base import Operation
from django.db.migrations.operations.fields import AddField
from django.db.migrations.state import ProjectState
from django.db.models import Field, Model
from django_pg_migration_tools import operations as pg_operations
from psycopg import sql

from backfill import conf, ddl, guard, service
from backfill.ddl import LockNotAcquired
from backfill.errors import UnknownDefinition
from backfill.registry import Definition, get_definition

__all__ = ["AddNullableField", "BackfillIncomplete", "EnforceNotNull", "LockNotAcquired"]

logger = logging.getLogger(__name__)

# Namespace of the advisory lock that keeps two migrate runs from racing.
ADVISORY_LOCK_CLASS = 0x0BF1


class BackfillIncomplete(RuntimeError):
    """The contract was refused: rows are still empty. Nothing was changed."""


class EnforceNotNull(NotInTransactionMixin, Operation):
    """Make `model_name.name` NOT NULL once no row of the column is empty.

    The gate reads the column itself through the historical model, so the
    migration keeps working after the `backfill` definition is deleted (routine
    clean-up once the contract is deployed). While the definition is still
    registered, its verification runs too, and it may finish a few last rows
    inline (BACKFILL_FINALIZE_INLINE_ROWS).
    """

    reversible = True
    reduces_to_sql = True

    def __init__(
        self,
        model_name: str,
        name: str,
        backfill: str,
        wait_seconds: float | None = None,
        finalize_inline_rows: int | None = None,
    ) -> None:
        self.model_name = model_name
        self.name = name
        self.backfill = backfill
        self.wait_seconds = wait_seconds
        self.finalize_inline_rows = finalize_inline_rows

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "model_name": self.model_name,
            "name": self.name,
            "backfill": self.backfill,
        }
        for option in ("wait_seconds", "finalize_inline_rows"):
            if getattr(self, option) is not None:
                kwargs[option] = getattr(self, option)
        return self.__class__.__qualname__, [], kwargs

    def describe(self) -> str:
        return f"Enforce NOT NULL on {self.model_name}.{self.name} once backfill {self.backfill!r} is complete"

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.model_name.lower()}_{self.name.lower()}_not_null"

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        model_state = state.models[app_label, self.model_name.lower()]
        field = model_state.fields[self.name].clone()
        field.null = False
        state.alter_field(app_label, self.model_name.lower(), self.name, field, True)

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        alias = schema_editor.connection.alias
        if not self.allow_migrate_model(alias, model):
            return
        column = model._meta.get_field(self.name).column
        if schema_editor.collect_sql:
            pg_operations.NullsManager().set_not_null(app_label, schema_editor, model, column)
            return
        self._ensure_not_in_transaction(schema_editor)
        with AdvisoryLock(alias, f"{self.model_name}.{self.name}"):
            self.gate(from_state.apps.get_model(app_label, self.model_name), alias)
            self.waiting_for_gaps(
                schema_editor,
                lambda: pg_operations.NullsManager().set_not_null(
                    app_label, schema_editor, model, column
                ),
            )
        self.supersede_guard(schema_editor, model)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        column = model._meta.get_field(self.name).column
        if schema_editor.collect_sql:
            # set_null asks the catalog first, which sqlmigrate cannot do: show the statement.
            pg_operations.NullsManager()._alter_table_drop_not_null(
                schema_editor, model._meta.db_table, column
            )
            return
        self._ensure_not_in_transaction(schema_editor)
        self.waiting_for_gaps(
            schema_editor,
            lambda: pg_operations.NullsManager().set_null(app_label, schema_editor, model, column),
        )
        names = guard.GuardNames.of(model, self.name, schema_editor)
        if guard.is_installed(schema_editor, names):
            with ddl.gaps(schema_editor.connection.alias, wait_seconds=self.wait_seconds):
                guard.install(schema_editor, names)

    def supersede_guard(self, schema_editor: BaseDatabaseSchemaEditor, model: type[Model]) -> None:
        """NOT NULL now does the guard's work: drop its trigger and the empty pending index.

        Its function stays, the mark that reversing the contract puts them back.
        """
        names = guard.GuardNames.of(model, self.name, schema_editor)
        if guard.is_installed(schema_editor, names):
            with ddl.gaps(schema_editor.connection.alias, wait_seconds=self.wait_seconds):
                guard.remove(schema_editor, names, keep_function=True)

    def gate(self, model: type[Model], alias: str) -> None:
        """Refuse, changing nothing, while the column has empty rows or verification fails."""
        label = f"{model._meta.app_label}.{model._meta.object_name}.{self.name}"
        empty = model._default_manager.using(alias).filter(**{f"{self.name}__isnull": True})
        definition = registered(self.backfill)
        pending = empty.count()
        if definition is not None and 0 < pending <= self.inline_rows():
            logger.warning(
                "finishing the last %s rows of %s inline before enforcing NOT NULL", pending, label
            )
            service.run_sync(self.backfill, "migration")
            pending = empty.count()
        problems = []
        if definition is not None:
            with connections[alias].cursor() as cursor:
                problems = definition.verify(cursor)
        if pending:
            problems.insert(
                0,
                f"{pending:,} rows of {label} are still empty; "
                + (
                    f"run `manage.py backfill start {self.backfill}`"
                    if definition is not None
                    else f"the backfill {self.backfill!r} that filled them is no longer registered"
                ),
            )
        if problems:
            raise BackfillIncomplete(
                f"{'; '.join(problems)}; wait for `manage.py backfill check {self.backfill}` "
                "to pass, then migrate again. Nothing was changed."
            )

    def inline_rows(self) -> int:
        if self.finalize_inline_rows is not None:
            return self.finalize_inline_rows
        return conf.get_int("BACKFILL_FINALIZE_INLINE_ROWS")

    def waiting_for_gaps(self, schema_editor: BaseDatabaseSchemaEditor, step: Any) -> None:
        """Each statement waits for a gap in the table's locks, then attempts briefly (ddl.py)."""
        with ddl.gaps(schema_editor.connection.alias, wait_seconds=self.wait_seconds):
            step()


def registered(name: str) -> Definition | None:
    """The definition while it is registered; None once it has been deleted."""
    try:
        return get_definition(name)
    except UnknownDefinition:
        return None


class AdvisoryLock:
    """Session advisory lock: a second migrate waits, then finds the work done."""

    def __init__(self, alias: str, key: str) -> None:
        self.alias = alias
        self.key = key

    def __enter__(self) -> None:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_lock(%s, hashtext(%s))", [ADVISORY_LOCK_CLASS, self.key]
            )

    def __exit__(self, *exc: object) -> None:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_unlock(%s, hashtext(%s))", [ADVISORY_LOCK_CLASS, self.key]
            )


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
            with ddl.gaps(schema_editor.connection.alias):
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
