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
from backfill.engine.plan import batch_parameters
from backfill.registry import get_definition
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
