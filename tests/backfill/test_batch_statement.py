"""The batch statement reads about its own rows, whatever the planner knows of the column.

Right after the expand migration the new column has no statistics (the table's
last ANALYZE predates it), so the planner guesses that few rows are pending.
A batch must still lock its candidates by key, not walk every pending row to
find them: that made each batch cost as much as the rows left, whatever its size.
"""

from typing import Any

import pytest
from django.db import connection, transaction

from backfill.engine.batch import SELECT_BATCH_SQL
from backfill.engine.expression_fill import (
    RANGE_END_SQL,
    WRITE_FIRST_SETTINGS,
    WRITE_FIRST_SQL,
    statement_for,
)
from backfill.engine.plan import batch_parameters
from backfill.registry import get_definition
from backfill.transactions import local_settings
from tests.data import app_session, seed

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = "organizations_organization"
SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


def forget_statistics(column: str) -> None:
    """The column as the expand migration leaves it: the table analyzed, the column never."""
    with app_session(autocommit=True) as session:
        session.execute(f"ANALYZE {TABLE}")
        session.execute(
            "DELETE FROM pg_statistic WHERE starelid = %s::regclass AND staattnum = "
            "(SELECT attnum FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s)",
            [TABLE, TABLE, column],
        )


def rows_read(node: dict[str, Any]) -> list[int]:
    """Rows each scan of the table read (returned and filtered out), over its loops."""
    own = []
    if node["Node Type"] in SCANS and node.get("Relation Name") == TABLE:
        returned = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        own.append(returned * node["Actual Loops"])
    return own + [n for child in node.get("Plans", []) for n in rows_read(child)]


@pytest.mark.parametrize("size", [50, 500])
def test_a_batch_locks_its_candidates_by_key_when_the_column_has_no_statistics(size):
    seed(20_000)
    forget_statistics("admin_id")
    definition = get_definition("admin_groups")
    parameters = batch_parameters(definition, size)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + definition.compose(SELECT_BATCH_SQL), parameters
        )
        (plan,) = cursor.fetchone()[0]
        transaction.set_rollback(True)
    reads = rows_read(plan["Plan"])
    assert reads
    assert max(reads) <= 2 * size, reads


@pytest.mark.parametrize("size", [50, 500])
def test_a_batch_writing_first_reads_about_its_own_rows_when_the_column_has_no_statistics(size):
    """Both statements of an expression's writing-first batch: where its range
    ends, and the UPDATE of that range."""
    seed(20_000)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET search_name = NULL")
    forget_statistics("search_name")
    definition = get_definition("search_names")
    parameters = {**batch_parameters(definition, size), "job": 0, "slice": 0}
    with local_settings(WRITE_FIRST_SETTINGS) as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + definition.compose(RANGE_END_SQL), parameters
        )
        (end_plan,) = cursor.fetchone()[0]
        cursor.execute(definition.compose(RANGE_END_SQL), parameters)
        row = cursor.fetchone()
        if row is None:
            cursor.execute(definition.pending_query("count(*)"))
            pytest.fail(
                f"no {size}th pending key up to {parameters['high']}: "
                f"{cursor.fetchone()[0]} rows pending, plan {end_plan}"
            )
        parameters["high"] = row[0]
        cursor.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement_for(definition, WRITE_FIRST_SQL),
            parameters,
        )
        (write_plan,) = cursor.fetchone()[0]
        transaction.set_rollback(True)
    for plan in (end_plan, write_plan):
        reads = rows_read(plan["Plan"])
        assert reads
        assert max(reads) <= 2 * size, (reads, plan)
