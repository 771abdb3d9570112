"""Expand step: from now on, no writer can put NULL back into a filled row.

`GuardFilledColumn` installs, for one nullable column being backfilled:

- a trigger that keeps the stored value when an UPDATE would set the column
  back to NULL. A stale instance saved after its batch ran (a form, an admin
  edit, `bulk_update`), an older app version, `QuerySet.update` or raw SQL:
  the database enforces it, not `save()`. Its `WHEN` clause is evaluated by
  PostgreSQL itself, so ordinary updates never call the function. INSERTs are
  left alone: during a rolling deploy, servers still on the old code insert
  rows without the value, those inserts keep working, and the backfill fills
  them. (A `CHECK (col IS NOT NULL) NOT VALID` would refuse those inserts and
  turn every stale save into an error instead.) A revert batch, and only it,
  sets `backfill.reverting` to pass;
- a partial index on the primary key of the pending rows, built
  concurrently, so that what is left to fill is an index lookup for the
  batches, the checker and the contract's gate, however few rows remain.
  On a partitioned table, one per partition, built concurrently and attached
  to an index on the parent.

`EnforceNotNull` drops both once the column is NOT NULL (nothing can be pending
any more) and puts them back if the contract is reversed.
"""

from dataclasses import dataclass

from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.models import Model
from psycopg import sql

from backfill.registry import column_of
from backfill.transactions import REVERTING_SETTING


@dataclass(frozen=True)
class GuardNames:
    table: str
    column: str
    key: str
    function: str
    trigger: str
    index: str

    @classmethod
    def of(
        cls, model: type[Model], field_name: str, editor: BaseDatabaseSchemaEditor
    ) -> "GuardNames":
        table = str(model._meta.db_table)
        column = column_of(model, field_name)
        key = str(model._meta.pk.column) if model._meta.pk else "id"
        name = editor._create_index_name  # type: ignore[attr-defined]  # bounded, hashed names
        return cls(
            table=table,
            column=column,
            key=key,
            function=name(table, [column], suffix="_keep_filled"),
            trigger=name(table, [column], suffix="_keep_filled"),
            index=name(table, [column], suffix="_pending"),
        )


def install_statements(names: GuardNames) -> list[str]:
    ids = {
        "table": sql.Identifier(names.table),
        "column": sql.Identifier(names.column),
        "key": sql.Identifier(names.key),
        "function": sql.Identifier(names.function),
        "trigger": sql.Identifier(names.trigger),
        "index": sql.Identifier(names.index),
        "setting": sql.Literal(REVERTING_SETTING),
    }
    statements = [
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN NEW.{column} := OLD.{column}; RETURN NEW; END $$",
        "CREATE OR REPLACE TRIGGER {trigger} BEFORE UPDATE OF {column} ON {table} "
        "FOR EACH ROW WHEN (OLD.{column} IS NOT NULL AND NEW.{column} IS NULL "
        "AND current_setting({setting}, true) IS DISTINCT FROM 'on') "
        "EXECUTE FUNCTION {function}()",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {table} ({key}) WHERE {column} IS NULL",
    ]
    return [sql.SQL(s).format(**ids).as_string() for s in statements]


def remove_statements(names: GuardNames, keep_function: bool) -> list[str]:
    ids = {
        "table": sql.Identifier(names.table),
        "function": sql.Identifier(names.function),
        "trigger": sql.Identifier(names.trigger),
        "index": sql.Identifier(names.index),
    }
    statements = [
        "DROP TRIGGER IF EXISTS {trigger} ON {table}",
        "DROP INDEX CONCURRENTLY IF EXISTS {index}",
    ]
    if not keep_function:
        statements.append("DROP FUNCTION IF EXISTS {function}()")
    return [sql.SQL(s).format(**ids).as_string() for s in statements]


def drop_invalid_index(editor: BaseDatabaseSchemaEditor, index: str) -> None:
    """A concurrent build cut off halfway leaves an INVALID index that IF NOT EXISTS would keep."""
    with editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
            [sql.Identifier(index).as_string()],
        )
        row = cursor.fetchone()
    if row and row[0]:
        editor.execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}")
            .format(sql.Identifier(index))
            .as_string()
        )


def is_installed(editor: BaseDatabaseSchemaEditor, names: GuardNames) -> bool:
    """Whether the expand step installed a guard here (its function outlives the contract)."""
    with editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regproc(%s) IS NOT NULL", [sql.Identifier(names.function).as_string()]
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def install(editor: BaseDatabaseSchemaEditor, names: GuardNames) -> None:
    partitions = [] if editor.collect_sql else partitions_of(editor, names.table)
    if not editor.collect_sql and not partitions:
        drop_invalid_index(editor, names.index)
    *ddl, build_index = install_statements(names)
    for statement in ddl:
        editor.execute(statement)
    if partitions:
        index_partitioned(editor, names, partitions)
        return
    with concurrent_build(editor):
        editor.execute(build_index)


def remove(editor: BaseDatabaseSchemaEditor, names: GuardNames, keep_function: bool) -> None:
    drop_trigger, drop_index, *rest = remove_statements(names, keep_function)
    editor.execute(drop_trigger)
    if not editor.collect_sql and partitions_of(editor, names.table):
        # A partitioned index cannot be dropped CONCURRENTLY; dropping it (and
        # its partitions' indexes with it) reads no rows, under the lock timeout.
        editor.execute(
            sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(names.index)).as_string()
        )
    else:
        with concurrent_build(editor):
            editor.execute(drop_index)
    for statement in rest:
        editor.execute(statement)


def partitions_of(editor: BaseDatabaseSchemaEditor, table: str) -> list[str]:
    """The partitions of a partitioned table (none for a plain table)."""
    with editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE i.inhparent = to_regclass(%s) AND p.relkind = 'p' ORDER BY c.relname",
            [sql.Identifier(table).as_string()],
        )
        return [row[0] for row in cursor.fetchall()]


def index_partitioned(
    editor: BaseDatabaseSchemaEditor, names: GuardNames, partitions: list[str]
) -> None:
    """The pending-rows index of a partitioned table, built without blocking writes.

    CREATE INDEX CONCURRENTLY refuses a partitioned table, and a plain one
    would block writes on every partition for the whole build. Instead: an
    index on the parent alone (invalid, and instant), each partition's index
    built concurrently, then attached; the parent's becomes valid once all
    are. Every step checks the catalog first, so running it again finishes it.
    """
    condition = sql.SQL("({key}) WHERE {column} IS NULL").format(
        key=sql.Identifier(names.key), column=sql.Identifier(names.column)
    )
    parent = sql.Identifier(names.index)
    editor.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON ONLY {} {}")
        .format(parent, sql.Identifier(names.table), condition)
        .as_string()
    )
    name = editor._create_index_name  # type: ignore[attr-defined]
    for partition in partitions:
        child_name = name(partition, [names.column], suffix="_pending")
        child = sql.Identifier(child_name)
        if not is_attached(editor, child.as_string()):
            drop_invalid_index(editor, child_name)
        with concurrent_build(editor):
            editor.execute(
                sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} {}")
                .format(child, sql.Identifier(partition), condition)
                .as_string()
            )
        if not is_attached(editor, child.as_string()):
            editor.execute(
                sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(parent, child).as_string()
            )


def is_attached(editor: BaseDatabaseSchemaEditor, index: str) -> bool:
    with editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s))", [index]
        )
        row = cursor.fetchone()
    return bool(row and row[0])


class concurrent_build:
    """No lock timeout for a concurrent index build or drop.

    It waits for older transactions without blocking anyone, and a timeout
    would leave an INVALID index behind; the timeout in force is put back.
    """

    def __init__(self, editor: BaseDatabaseSchemaEditor) -> None:
        self.editor = editor
        self.previous = ""

    def __enter__(self) -> None:
        if self.editor.collect_sql:
            return
        with self.editor.connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('lock_timeout')")
            row = cursor.fetchone()
            self.previous = row[0] if row else "0"
            cursor.execute("SET lock_timeout = 0")

    def __exit__(self, *exc: object) -> None:
        if self.editor.collect_sql:
            return
        with self.editor.connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, false)", [self.previous])


def step_aside(editor: BaseDatabaseSchemaEditor, model: type[Model], field_name: str) -> None:
    """NOT NULL now does the guard's work: drop its trigger and the empty pending index.

    Its function stays, the mark that reversing the contract puts them back.
    The caller runs this inside the gap waiter.
    """
    names = GuardNames.of(model, field_name, editor)
    if is_installed(editor, names):
        remove(editor, names, keep_function=True)


def step_back_in(editor: BaseDatabaseSchemaEditor, model: type[Model], field_name: str) -> None:
    """The contract reversed: the column may be empty again, so the guard returns."""
    names = GuardNames.of(model, field_name, editor)
    if is_installed(editor, names):
        install(editor, names)
