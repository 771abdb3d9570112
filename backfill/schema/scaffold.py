"""`makebackfill`: the three files that make a declared column required, safely.

The developer declares the field on the model as it must end (required, no
default). `makemigrations` would add it in one `ALTER TABLE` with a default,
or ask for one; here Django's own autodetector writes the expand migration as
if the field were nullable, its operation is swapped for the safe one for the
field's kind, the write-path guard follows, and a contract migration with
`EnforceNotNull` makes the migration state equal to the model again, so that
`makemigrations --check` stays clean. The definition goes to the app's
`backfills.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.apps import apps
from django.db import connection, models
from django.db.migrations import AddField, Migration
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.questioner import NonInteractiveMigrationQuestioner
from django.db.migrations.state import ProjectState
from django.db.migrations.writer import MigrationWriter
from django_pg_migration_tools import operations as pg_operations

from backfill.errors import BackfillError
from backfill.nullability import Nullability, nullability
from backfill.registry import all_definitions
from backfill.schema.contract import EnforceNotNull
from backfill.schema.definition_source import definitions_source
from backfill.schema.expand import AddNullableField, GuardFilledColumn

NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


class ScaffoldRefused(BackfillError):
    """The field cannot be scaffolded as asked; nothing was written."""


@dataclass(frozen=True)
class Request:
    model_label: str
    field_name: str
    name: str | None = None
    expression: str | None = None


@dataclass(frozen=True)
class Written:
    name: str
    paths: list[Path]


def scaffold(request: Request) -> Written:
    """Check everything first, then write the files (nothing is written on a refusal)."""
    model, field = declared_field(request.model_label, request.field_name)
    name = definition_name(request, model, field)
    if request.expression is not None and not request.expression.strip():
        raise ScaffoldRefused("--expression is empty: give the SQL that computes the value")
    expand = expand_migration(model, field)
    contract = contract_migration(model, field, expand, name)
    definitions = definitions_source(model, field, name, request.expression)
    writers = [MigrationWriter(expand), MigrationWriter(contract)]
    for writer in writers:
        if Path(writer.path).exists():
            raise ScaffoldRefused(f"{writer.path} exists already")
    paths = [write_migration(writer) for writer in writers]
    return Written(name=name, paths=[*paths, definitions.write()])


def declared_field(
    model_label: str, field_name: str
) -> tuple[type[models.Model], models.Field[Any, Any]]:
    try:
        model = apps.get_model(model_label)
    except (LookupError, ValueError):
        raise ScaffoldRefused(f"no model {model_label!r}: give it as app_label.ModelName") from None
    try:
        field = model._meta.get_field(field_name)
    except Exception:
        raise ScaffoldRefused(
            f"{model_label} has no field {field_name!r}: declare it on the model first, "
            "as it must end (required, no default)"
        ) from None
    label = f"{model_label}.{field_name}"
    if not model._meta.managed:
        raise ScaffoldRefused(
            f"{model_label} is not managed by Django (Meta.managed = False): "
            "its table is not Django's to migrate"
        )
    if not isinstance(field, models.Field) or not field.concrete or field.many_to_many:
        raise ScaffoldRefused(f"{label} is not a column of {model._meta.db_table}")
    if field.generated:
        # PostgreSQL computes it: there is nothing to backfill, and adding it
        # rewrites the table under ACCESS EXCLUSIVE.
        raise ScaffoldRefused(
            f"{label} is a GeneratedField: the database computes it, there is nothing to "
            "backfill; add it with `makemigrations`"
        )
    if field.primary_key:
        raise ScaffoldRefused(f"{label} is the primary key")
    if field.null:
        raise ScaffoldRefused(
            f"{label} is nullable: declare it as it must end (without null=True); "
            "the expand migration adds it nullable"
        )
    if field.has_default() or field.has_db_default():
        raise ScaffoldRefused(
            f"{label} has a default: a required column filled by a backfill has none "
            "(a default is the one-ALTER path this command replaces)"
        )
    state = column_in_database(model, field)
    if state is not Nullability.MISSING:
        raise ScaffoldRefused(
            f"column {field.column} already exists in {model._meta.db_table} "
            f"({EXISTING[state]}): only a column the database does not have yet can be scaffolded"
        )
    return model, field


# What the refusal says of a column that exists, read from the catalog: a NOT
# NULL not yet validated (PostgreSQL 18) is a contract under way, not done.
EXISTING = {
    Nullability.NULLABLE: "nullable: its expand step has run",
    Nullability.NOT_VALID: (
        "NOT NULL NOT VALID: a contract is under way, "
        "`migrate` finishes it once `manage.py backfill check` passes"
    ),
    Nullability.ENFORCED: "NOT NULL, validated: nothing is left to fill",
}


def column_in_database(model: type[models.Model], field: models.Field[Any, Any]) -> Nullability:
    with connection.cursor() as cursor:
        if model._meta.db_table not in connection.introspection.table_names(cursor):
            raise ScaffoldRefused(
                f"table {model._meta.db_table} does not exist: run `migrate` first"
            )
        return nullability(cursor, model._meta.db_table, str(field.column))


def definition_name(
    request: Request, model: type[models.Model], field: models.Field[Any, Any]
) -> str:
    name = request.name or f"{model._meta.model_name}_{field.name}".lower()
    if not NAME.fullmatch(name):
        raise ScaffoldRefused(
            f"backfill name {name!r}: use lowercase letters, digits and _ (at most 63, "
            "starting with a letter)"
        )
    if name in {definition.name for definition in all_definitions()}:
        raise ScaffoldRefused(f"a backfill named {name!r} exists already: choose --name")
    return name


def expand_migration(model: type[models.Model], field: models.Field[Any, Any]) -> Migration:
    """Django's own migration for this one field added nullable, its operation made safe.

    The autodetector compares the migrations' state with that state plus this
    field alone: other fields declared and not yet migrated are left for
    their own `makebackfill` or `makemigrations`.
    """
    app_label = model._meta.app_label
    model_name = str(model._meta.model_name)
    label = f"{model._meta.label}.{field.name}"
    loader = MigrationLoader(None, ignore_no_migrations=True)
    current = loader.project_state()
    if (app_label, model_name) not in current.models:
        raise ScaffoldRefused(
            f"{model._meta.label} has no migration yet: run `makemigrations` first"
        )
    if field.name in current.models[app_label, model_name].fields:
        raise ScaffoldRefused(
            f"{label} is in the app's migrations already (not yet applied?): nothing to scaffold"
        )
    nullable = ProjectState.from_apps(apps).models[app_label, model_name].fields[field.name].clone()
    nullable.null = True
    target = current.clone()
    target.add_field(app_label, model_name, field.name, nullable, preserve_default=True)
    autodetector = MigrationAutodetector(
        current, target, RefusingQuestioner(specified_apps={app_label}, dry_run=True)
    )
    changes = autodetector.changes(
        graph=loader.graph,
        trim_to_apps={app_label},
        convert_apps={app_label},
        migration_name=f"{model_name}_{field.name}_expand".lower(),
    )
    (migration,) = changes[app_label]
    (add,) = migration.operations
    assert isinstance(add, AddField)
    return non_atomic_migration(
        migration.name,
        app_label,
        list(migration.dependencies),
        [safe_add(model_name, field.name, add.field), GuardFilledColumn(model_name, field.name)],
    )


def non_atomic_migration(
    name: str, app_label: str, dependencies: list[Any], operations: list[Any]
) -> Migration:
    """Concurrent index builds and the gap waiter need each statement in its own transaction."""
    attributes = {"dependencies": dependencies, "operations": operations, "atomic": False}
    migration_class: type[Migration] = type("Migration", (Migration,), attributes)
    return migration_class(name, app_label)


class RefusingQuestioner(NonInteractiveMigrationQuestioner):
    """Any question means another change of the app is waiting for its migration."""

    def refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ScaffoldRefused(
            "the app has other model changes without migrations: "
            "run `makemigrations` for them first (or scaffold each new required field in turn)"
        )

    ask_not_null_addition = ask_not_null_alteration = refuse


def safe_add(model_name: str, name: str, field: models.Field[Any, Any]) -> Any:
    """The add operation that takes no long lock for this kind of field."""
    if isinstance(field, models.OneToOneField):
        return pg_operations.SaferAddFieldOneToOne(model_name, name, field)
    if isinstance(field, models.ForeignKey):
        return pg_operations.SaferAddFieldForeignKey(model_name, name, field)
    if field.unique or getattr(field, "db_index", False):
        return AddNullableField(model_name, name, field)
    return AddField(model_name, name, field)


def contract_migration(
    model: type[models.Model], field: models.Field[Any, Any], expand: Migration, backfill_name: str
) -> Migration:
    app_label = model._meta.app_label
    number = int(expand.name.split("_", 1)[0]) + 1
    name = f"{number:04d}_{model._meta.model_name}_{field.name}_contract".lower()
    return non_atomic_migration(
        name,
        app_label,
        [(app_label, expand.name)],
        [EnforceNotNull(str(model._meta.model_name), field.name, backfill=backfill_name)],
    )


def write_migration(writer: MigrationWriter) -> Path:
    text = writer.as_string()
    if writer.migration.atomic is False:
        # The writer knows no `atomic`: concurrent index builds need it off.
        text = text.replace(
            "class Migration(migrations.Migration):\n",
            "class Migration(migrations.Migration):\n    atomic = False\n",
            1,
        )
    path = Path(writer.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
