"""Backfill definitions: what to fill, and how, registered by name.

A definition knows one table and one column. The engine walks the table in
primary-key slices and hands each batch of pending rows to `fill`; it never
needs to know what the column means. Apps declare theirs in `<app>/backfills.py`,
discovered when Django starts, like `admin.py`.
"""

from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

from django.apps import apps
from django.db import connection, models
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from backfill.errors import UnknownDefinition, UnsupportedKey

Row = tuple[Any, ...]


class Definition:
    """Subclass, set the class attributes, implement `fill`, and `@register` it."""

    name: ClassVar[str]
    model_label: ClassVar[str]  # "app_label.ModelName"
    field_name: ClassVar[str]
    description: ClassVar[str] = ""
    # Model fields read with each pending row and passed to `fill` after the key.
    columns: ClassVar[tuple[str, ...]] = ()
    # An SQL expression over the row's columns. Declare it when `fill` writes
    # to rows shared by all rows with the same value (a counter, a parent, a
    # unique name made from it): the job's slices then split the table by a
    # hash of this value instead of by key range, so no two slices ever fill
    # rows with the same value at once, and they never wait on each other.
    # Developer-written SQL, never user input.
    partition_key: ClassVar[str | None] = None
    # What rows sharing a partition value have in common, in the plural, for
    # people: the dashboard describes a slice as "a quarter of the names, by hash".
    partition_label: ClassVar[str] = "partition values"

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.model_label)

    @property
    def table(self) -> str:
        return str(self.model._meta.db_table)

    @property
    def key_column(self) -> str:
        pk = self.model._meta.pk
        assert pk is not None
        assert pk.column is not None
        return pk.column

    @property
    def target_column(self) -> str:
        return column_of(self.model, self.field_name)

    @property
    def label(self) -> str:
        return f"{self.model_label}.{self.field_name}"

    def read_columns(self) -> list[str]:
        return [column_of(self.model, name) for name in self.columns]

    def compose(self, template: str, **extra: sql.Composable) -> str:
        """An SQL template with this definition's names quoted in: {table}, {key},
        {key_type}, {column} (the target), {pending}, {columns} and {locked_columns}
        (", c" and ", l.c" for each column `fill` reads), {in_range} (true for keys
        in (%(after)s, %(high)s], given as text), {share} (true for the rows of a
        slice's share, given `share_parameters`); values stay parameters."""
        read = self.read_columns()
        return (
            sql.SQL(template)
            .format(
                table=sql.Identifier(self.table),
                key=sql.Identifier(self.key_column),
                key_type=sql.SQL(self.key_type),
                column=sql.Identifier(self.target_column),
                pending=self.pending_condition(),
                in_range=self.range_condition(),
                columns=sql.SQL("").join(sql.SQL(", ") + sql.Identifier(c) for c in read),
                locked_columns=sql.SQL("").join(sql.SQL(", l.") + sql.Identifier(c) for c in read),
                share=self.share_condition(),
                **extra,
            )
            .as_string()
        )

    def range_condition(self) -> sql.Composable:
        """SQL true for keys in (%(after)s, %(high)s], both the key's text form.

        A null `after` means no lower bound. Values are bound client-side, so
        the planner sees constants: the null test folds away and the rest is a
        plain range on the key index, whatever the key's type.
        """
        return sql.SQL(
            "(%(after)s::{key_type} IS NULL OR {key} > %(after)s::{key_type}) "
            "AND {key} <= %(high)s::{key_type}"
        ).format(key=sql.Identifier(self.key_column), key_type=sql.SQL(self.key_type))

    def share_condition(self) -> sql.Composable:
        """SQL true for the rows whose partition hash falls in a slice's share.

        Written as "differs from every other residue" rather than "equals
        this one": the planner gives an equality on an expression without
        statistics a selectivity of 0.5%, and would then scan the whole table
        and sort instead of walking the key index in order.
        """
        if self.partition_key is None:
            return sql.SQL("TRUE")
        return sql.SQL("mod({hash}, %(modulus)s) <> ALL(%(others)s::int[])").format(
            hash=self.partition_hash()
        )

    def partition_hash(self) -> sql.Composable:
        """A row's partition hash: a non-negative integer, stable across processes."""
        assert self.partition_key is not None
        return sql.SQL("(hashtext(({key})::text) & 2147483647)").format(
            key=sql.SQL(self.partition_key)  # developer-written SQL
        )

    def pending_condition(self) -> sql.Composable:
        """SQL true for a row still to fill. Must be cheap to evaluate per row."""
        return sql.SQL("{} IS NULL").format(sql.Identifier(self.target_column))

    def pending_query(self, select: str) -> str:
        """`SELECT <select>` over the rows still to fill."""
        return self.compose("SELECT {select} FROM {table} WHERE {pending}", select=sql.SQL(select))

    def count_pending(self, cursor: CursorWrapper) -> int:
        """Exact count; the planner uses an index on the column where one exists."""
        cursor.execute(self.pending_query("count(*)"))
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    def prepare(self, cursor: CursorWrapper) -> dict[str, Any]:
        """Facts to remember when a job starts (kept on the job, given to revert)."""
        return {}

    def fill(self, cursor: CursorWrapper, rows: Sequence[Row]) -> int:
        """Fill these locked rows, set-based; return how many were filled."""
        raise NotImplementedError

    def verify(self, cursor: CursorWrapper) -> list[str]:
        """Problems with the filled data beyond rows still pending; [] when sound."""
        return []

    def set_expression(self) -> sql.Composable | None:
        """The value as an SQL expression over the row's own columns, when the
        fill is one: the engine then fills and logs a batch on the server, in
        one statement, and no row travels to Python. None: `fill` is called."""
        return None

    def revert(
        self, cursor: CursorWrapper, context: dict[str, Any], writes: Sequence[tuple[str, str]]
    ) -> int:
        """Undo these writes (key, value written, both as text); return rows reverted.

        Only rows that still hold the value the job wrote are emptied: a value
        the app wrote since is the app's, and stays.
        """
        statement = sql.SQL(
            "UPDATE {table} t SET {column} = NULL "
            "FROM unnest(%s::text[], %s::text[]) AS w(key, value) "
            "WHERE t.{key} = w.key::{key_type} AND t.{column}::text = w.value"
        ).format(
            table=sql.Identifier(self.table),
            column=sql.Identifier(self.target_column),
            key=sql.Identifier(self.key_column),
            key_type=sql.SQL(self.key_type),
        )
        cursor.execute(statement.as_string(), [[k for k, _ in writes], [v for _, v in writes]])
        return int(cursor.rowcount)

    @property
    def key_type(self) -> str:
        """The primary key's SQL type, to compare keys kept as text.

        A serial key's column type is "integer"/"bigint", not "serial": the
        type a value is cast to, not the one a column is created with.
        """
        pk = self.model._meta.pk
        assert pk is not None
        return str(pk.cast_db_type(connection))

    def refuse_unsupported_key(self) -> None:
        """One line, before a job exists, for a table the engine cannot walk."""
        pk = self.model._meta.pk
        if isinstance(pk, models.CompositePrimaryKey):
            columns = ", ".join(str(column) for column in pk.columns)
            raise UnsupportedKey(
                f"{self.model_label} has a composite primary key ({columns}); "
                "a backfill walks a table by a single-column key: add one "
                "(unique, not null) and make it the primary key, or fill it in one pass"
            )


def column_of(model: type[models.Model], field_name: str) -> str:
    field = model._meta.get_field(field_name)
    assert isinstance(field, models.Field)
    assert field.column is not None
    return field.column


class ExpressionDefinition(Definition):
    """Fill a column from an SQL expression over the row's own columns.

    The expression is code written by the developer, never user input.
    """

    expression: ClassVar[str]

    def set_expression(self) -> sql.Composable | None:
        """The expression, unless a subclass overrides `fill`: then its own code runs."""
        if type(self).fill is not ExpressionDefinition.fill:
            return None
        return sql.SQL(self.expression)  # developer-written SQL, never user input

    def fill(self, cursor: CursorWrapper, rows: Sequence[Row]) -> int:
        """For the held rows a slice retries by key (the batch itself is one
        statement, see `set_expression`)."""
        statement = sql.SQL(
            "WITH filled AS (UPDATE {table} SET {column} = ({expression}) "
            "WHERE {key} = ANY(%s) RETURNING {column} AS value) "
            "SELECT count(value) FROM filled"
        )
        cursor.execute(
            statement.format(
                table=sql.Identifier(self.table),
                column=sql.Identifier(self.target_column),
                expression=sql.SQL(self.expression),  # developer-written SQL, never user input
                key=sql.Identifier(self.key_column),
            ).as_string(),
            [[row[0] for row in rows]],
        )
        # Rows the expression gives NULL stay pending: they are not counted as filled.
        row = cursor.fetchone()
        return int(row[0]) if row else 0


_registry: dict[str, Definition] = {}

D = TypeVar("D", bound=type[Definition])


def register(definition_class: D) -> D:
    """Class decorator: make the definition available by its name."""
    name = definition_class.name
    existing = _registry.get(name)
    if existing is not None and type(existing).__qualname__ != definition_class.__qualname__:
        raise ValueError(f"backfill {name!r} is already registered by {type(existing)!r}")
    _registry[name] = definition_class()
    return definition_class


def get_definition(name: str) -> Definition:
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none"
        raise UnknownDefinition(f"unknown backfill {name!r} (known: {known})") from None


def all_definitions() -> list[Definition]:
    return [_registry[name] for name in sorted(_registry)]
