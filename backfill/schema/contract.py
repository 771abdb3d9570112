"""The contract step's operation: make a backfilled column required, safely.

`EnforceNotNull` is the contract step. It reads the column first and refuses,
changing nothing, while any row is still empty. Otherwise it sets NOT NULL the
way that holds ACCESS EXCLUSIVE only for milliseconds (not_null.py): from
PostgreSQL 18 ``ADD CONSTRAINT … NOT NULL col NOT VALID`` then ``VALIDATE
CONSTRAINT`` (the scan, under SHARE UPDATE EXCLUSIVE); below 18 through
django-pg-migration-tools' `NullsManager` (the same library as the expand
step): ``ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID``, ``VALIDATE
CONSTRAINT``, ``SET NOT NULL`` (PostgreSQL skips its scan thanks to the valid
check), then drop the check. Each statement waits for a gap in the table's locks without queueing, then
attempts under a short lock timeout (gaps.py), so a long transaction on the
table delays the contract, never the app; since every step first looks at
the catalog, a later `migrate` carries on where one that gave up stopped.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.postgres.operations import NotInTransactionMixin
from django.core.management.base import CommandError
from django.db import IntegrityError, connections
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from django.db.models import Model
from django.utils.module_loading import import_string
from django_pg_migration_tools import operations as pg_operations

from backfill import arrivals, conf
from backfill.errors import UnknownDefinition
from backfill.models import Job
from backfill.nullability import is_enforced, not_valid_leftover
from backfill.registry import Definition, column_of, get_definition
from backfill.schema import gaps, guard, not_null
from backfill.schema.gaps import LockNotAcquired

__all__ = ["BackfillIncomplete", "EnforceNotNull", "LockNotAcquired"]

logger = logging.getLogger(__name__)

# What finishes the last few rows inline. Named rather than imported: a
# migration loads the engine only when it actually finishes rows.
FINISH_INLINE = "backfill.engine.service.run_sync"

# Namespace of the advisory lock that keeps two migrate runs from racing.
ADVISORY_LOCK_CLASS = 0x0BF1


class BackfillIncomplete(CommandError, RuntimeError):
    """The contract was refused: rows are still empty. Nothing was changed.

    A CommandError, so `migrate` says it in one line rather than a traceback."""


class EnforceNotNull(NotInTransactionMixin, Operation):
    """Make `model_name.name` NOT NULL once no row of the column is empty.

    The gate reads the column itself through the historical model, so the
    migration keeps working after the `backfill` definition is deleted (routine
    clean-up once the contract is deployed). While the definition is still
    registered, its verification runs too, and it may finish a few last rows
    inline (BACKFILL_FINALIZE_INLINE_ROWS).
    """

    # Migrations name it by the public path, which survives moves inside the package.
    __module__ = "backfill"

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
            not_null.set_not_null(app_label, schema_editor, model, column)
            return
        self._ensure_not_in_transaction(schema_editor)
        with AdvisoryLock(alias, f"{self.model_name}.{self.name}"):
            self.gate(from_state.apps.get_model(app_label, self.model_name), schema_editor)
            self.waiting_for_gaps(
                schema_editor,
                lambda: self.set_not_null_or_undo(app_label, schema_editor, model, column),
            )
        self.waiting_for_gaps(
            schema_editor, lambda: guard.step_aside(schema_editor, model, self.name)
        )

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
            schema_editor, lambda: not_null.drop_check(schema_editor, model, column)
        )
        self.waiting_for_gaps(
            schema_editor,
            lambda: pg_operations.NullsManager().set_null(app_label, schema_editor, model, column),
        )
        self.waiting_for_gaps(
            schema_editor, lambda: guard.step_back_in(schema_editor, model, self.name)
        )

    def gate(self, model: type[Model], schema_editor: BaseDatabaseSchemaEditor) -> None:
        """Refuse while the column has empty rows or verification fails, changing nothing
        but dropping what a cut-off run left NOT VALID (drop_leftover)."""
        alias = schema_editor.connection.alias
        label = f"{model._meta.app_label}.{model._meta.object_name}.{self.name}"
        with connections[alias].cursor() as cursor:
            # Enforced means validated: a NOT NULL still NOT VALID (18) may cover NULLs.
            if is_enforced(cursor, model._meta.db_table, column_of(model, self.name)):
                return
        empty = model._default_manager.using(alias).filter(**{f"{self.name}__isnull": True})
        definition = registered(self.backfill)
        pending = empty.count()
        if definition is not None and 0 < pending <= self.inline_rows():
            logger.warning(
                "finishing the last %s rows of %s inline before enforcing NOT NULL", pending, label
            )
            import_string(FINISH_INLINE)(self.backfill, "migration")
            pending = empty.count()
        problems = []
        if definition is not None:
            with connections[alias].cursor() as cursor:
                problems = definition.verify(cursor)
        problems += self.reverts_in_progress(alias)
        if pending:
            problems.insert(0, self.still_empty(pending, label, definition, alias))
        if problems:
            raise BackfillIncomplete(
                f"{'; '.join(problems)}; wait for `manage.py backfill check {self.backfill}` "
                f"to pass, then migrate again. {self.drop_leftover(model, schema_editor)}"
            )

    def drop_leftover(self, model: type[Model], schema_editor: BaseDatabaseSchemaEditor) -> str:
        """A refused contract leaves no constraint behind: one a cut-off run left NOT VALID
        would refuse the old app's rows without a value, and reversing an unrecorded
        migration cannot remove it. What to say about it."""
        column = column_of(model, self.name)
        with schema_editor.connection.cursor() as cursor:
            name = not_valid_leftover(cursor, model._meta.db_table, column)
        if name is None:
            return "Nothing was changed."
        self.waiting_for_gaps(schema_editor, lambda: not_null.undo(schema_editor, model, column))
        return (
            f"The constraint {name} an earlier cut-off run left NOT VALID was dropped; "
            "nothing else was changed."
        )

    def still_empty(
        self, pending: int, label: str, definition: Definition | None, alias: str
    ) -> str:
        """Rows an old app version inserted are named as such (backfill/arrivals.py)."""
        if definition is None:
            return (
                f"{pending:,} rows of {label} are still empty; the backfill "
                f"{self.backfill!r} that filled them is no longer registered"
            )
        with connections[alias].cursor() as cursor:
            arrived = arrivals.recent(cursor, definition)
        if arrived is not None:
            return arrived.explain(pending)
        return (
            f"{pending:,} rows of {label} are still empty; "
            f"run `manage.py backfill start {self.backfill}`"
        )

    def set_not_null_or_undo(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        model: type[Model],
        column: str,
    ) -> None:
        """NOT NULL through a NOT VALID constraint, or no change at all.

        An old app version may insert a row without the value after the gate
        counted, while the contract waits for a gap: validation then fails.
        The constraint is dropped again (left NOT VALID, it would refuse those
        servers' inserts), and the contract stops with one line.
        """
        try:
            not_null.set_not_null(app_label, schema_editor, model, column)
        except IntegrityError:
            not_null.undo(schema_editor, model, column)
            raise BackfillIncomplete(self.raced(model, schema_editor.connection.alias)) from None

    def raced(self, model: type[Model], alias: str) -> str:
        """What validation found: the rows an old app version inserted, and what to do."""
        label = f"{model._meta.app_label}.{model._meta.object_name}.{self.name}"
        empty = model._default_manager.using(alias).filter(**{f"{self.name}__isnull": True})
        count = empty.count()
        keys = [str(k) for k in empty.order_by("pk").values_list("pk", flat=True)[:5]]
        listed = ", ".join(keys) + (", ..." if count > len(keys) else "")
        were = "row of {} was" if count == 1 else "rows of {} were"
        which = "key" if count == 1 else "keys"
        return (
            f"{count:,} {were.format(label)} inserted without a value while the contract "
            f"waited ({which} {listed}): an old app version is still writing; the check the "
            "contract added was dropped and nothing was changed. Once every server runs the "
            f"new version, run `manage.py backfill start {self.backfill}`, then migrate again."
        )

    def reverts_in_progress(self, alias: str) -> list[str]:
        """A revert under way empties rows again as it goes: even with none empty now,
        enforcing NOT NULL under it would fail each of its batches."""
        reverting = (
            Job.objects.using(alias)
            .of(self.backfill)
            .active()
            .filter(revert_started_at__isnull=False, reverted_at__isnull=True)
        )
        return [
            f"job #{job.pk} of {self.backfill!r} is reverting (it is {job.status}); "
            f"let it end or cancel it with `manage.py backfill cancel {self.backfill}`"
            for job in reverting
        ]

    def inline_rows(self) -> int:
        if self.finalize_inline_rows is not None:
            return self.finalize_inline_rows
        return conf.current().finalize_inline_rows

    def waiting_for_gaps(self, schema_editor: BaseDatabaseSchemaEditor, step: Any) -> None:
        """Each statement waits for a gap in the table's locks, then attempts briefly (gaps.py)."""
        with gaps.waiting(schema_editor.connection.alias, wait_seconds=self.wait_seconds):
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
