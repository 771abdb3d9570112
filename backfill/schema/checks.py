"""A deploy-time warning for contract migrations whose backfill is not finished.

`migrate` refuses such a migration safely (`EnforceNotNull` changes nothing
while rows are empty), but a deploy finds out only then. This check says so
before: it lists every unapplied migration with an `EnforceNotNull` whose
column still has empty rows, with the count and the command to run. It runs
with `check --deploy`, and with every command that checks a database
(`migrate`, `check --database default`); other commands skip it, since it
reads the tables.
"""

from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Warning, register
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration

from backfill import arrivals
from backfill.models import Job
from backfill.nullability import (
    Nullability,
    leftover_advice,
    none_pending,
    not_valid_leftover,
    nullability,
)
from backfill.registry import Definition
from backfill.schema.contract import EnforceNotNull, registered

TAG = "backfill"


@register(TAG)
def unfinished_contracts_before_migrate(
    app_configs: Sequence[Any] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    return [w for alias in databases or () for w in unfinished_contracts(alias)]


@register(TAG, deploy=True)
def unfinished_contracts_at_deploy(
    app_configs: Sequence[Any] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    return [] if databases else unfinished_contracts("default")


def unfinished_contracts(alias: str) -> list[CheckMessage]:
    try:
        executor = MigrationExecutor(connections[alias])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:
        return []  # the services check says that PostgreSQL cannot be reached
    return [
        warning
        for migration, backwards in plan
        if not backwards
        for operation in migration.operations
        if isinstance(operation, EnforceNotNull)
        for warning in contract_warnings(migration, operation, alias)
    ]


def contract_warnings(
    migration: Migration, operation: EnforceNotNull, alias: str
) -> list[CheckMessage]:
    name = f"{migration.app_label}.{migration.name}"
    definition = registered(operation.backfill)
    if definition is None:
        return []  # the gate reads the column itself; nothing to run from here
    try:
        with connections[alias].cursor() as cursor:
            if (
                nullability(cursor, definition.table, definition.target_column)
                is Nullability.MISSING
            ):
                return []  # the expand step comes first
            if none_pending(cursor, definition):
                return []
            pending = definition.count_pending(cursor)
            arrived = arrivals.recent(cursor, definition) if pending else None
            leftover = (
                not_valid_leftover(cursor, definition.table, definition.target_column)
                if pending
                else None
            )
    except DatabaseError:
        return []
    if not pending:
        return []
    said = (
        arrived.explain(pending)
        if arrived
        else f"{pending:,} rows of {definition.label} are still empty"
    )
    if leftover:
        contract = f"`manage.py migrate {migration.app_label} {migration.name}`"
        said += "; " + leftover_advice(definition.table, leftover, contract)
    return [
        Warning(
            f"{name} will be refused: {said}.",
            hint=finish_hint(definition, alias),
            id="backfill.W001",
        )
    ]


def finish_hint(definition: Definition, alias: str) -> str:
    """What to run: `start` only when no job of the backfill is active (else it is refused)."""
    active = Job.objects.using(alias).of(definition.name).active().order_by("-pk").first()
    first = (
        f"let job #{active.pk} ({active.status}) end: `manage.py backfill status {definition.name}`"
        if active is not None
        else f"`manage.py backfill start {definition.name}`"
    )
    return (
        f"Finish the backfill first: {first}, "
        f"then `manage.py backfill check {definition.name}` until it passes."
    )
