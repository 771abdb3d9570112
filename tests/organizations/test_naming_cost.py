"""The cost per row of naming stays flat when many organizations share a name."""

import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from organizations import naming
from organizations.models import Organization
from organizations.naming import claim_admin_groups

pytestmark = pytest.mark.django_db

BATCH = 1_000
BATCHES = 20


def name_batches(name: str) -> list[float]:
    """Name BATCHES batches of same-named rows; seconds per batch."""
    Organization.objects.bulk_create(Organization(name=name) for _ in range(BATCH * BATCHES))
    keys = list(Organization.objects.filter(name=name).order_by("pk").values_list("pk", flat=True))
    timings = []
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        began = time.perf_counter()
        with (
            transaction.atomic(),
            CaptureQueriesContext(connection) as queries,
            connection.cursor() as cursor,
        ):
            cursor.execute("SET LOCAL jit = off")
            claimed = claim_admin_groups(cursor, chunk, [name] * len(chunk))
        timings.append(time.perf_counter() - began)
        assert len(claimed) == len(chunk)
        assert len(queries) == 2  # SET, then one naming statement, whatever came before
    return timings


def test_the_last_batches_of_one_shared_name_cost_what_the_first_did():
    timings = name_batches("Everyone Is Called This")
    first, last = sum(timings[1:4]) / 3, sum(timings[-3:]) / 3
    # Probing from 0 every batch would make the last batch ~20x the first.
    assert last < first * 3, (first, last)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT max(name) FROM auth_group WHERE name LIKE 'Everyone Is Called This 19999 Admin'"
        )
        assert cursor.fetchone()[0] == "Everyone Is Called This 19999 Admin"


def test_a_million_row_round_joins_the_short_bases_instead_of_rescanning_free_names_per_row():
    """At a million rows the planner once ran the held-back check as a correlated
    subplan scanning every free name for each row: quadratic, hours for one
    pass. The plan must join the short bases, whatever the batch size."""
    keys = list(range(1, 1_000_001))
    remaining = {key: f"Base {key % 200}" for key in keys}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(
            "EXPLAIN " + naming.claim_round_sql(), naming.claim_round_params(remaining, 0)
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "CTE short" in plan
    assert "Filter: (base = CASE" not in plan, plan
