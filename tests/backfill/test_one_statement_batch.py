"""An expression's batch is one statement: locked, filled and logged on the server."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backfill.conf import BatchLimits
from backfill.engine import service
from backfill.engine.batch import run_batch
from backfill.engine.options import JobOptions
from backfill.models import Slice, Write
from backfill.registry import get_definition
from organizations.models import Organization
from tests.backfill.test_success_on_data import SearchNamesWithAWriter
from tests.data import app_session, seed

pytestmark = pytest.mark.django_db(transaction=True)

OWNER = "one-statement-test"


def leased_slice(definition: str) -> Slice:
    job = service.start(definition, "test", JobOptions.build(concurrency=1, pace=False))
    slc = Slice.objects.filter(job=job).order_by("number").first()
    Slice.objects.filter(pk=slc.pk).update(lease_owner="", lease_expires_at=None)
    acquired = Slice.objects.acquire(slc.pk, OWNER, 60)
    assert acquired is not None
    return acquired


def test_a_batch_skips_the_row_the_app_holds_and_logs_what_it_wrote(local_queue):
    seed(200)
    Organization.objects.update(search_name=None)
    slc = leased_slice("search_names")
    keys = list(Organization.objects.order_by("pk").values_list("pk", flat=True))
    held = keys[3]
    with app_session() as app:
        app.execute("SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE", [held])
        with CaptureQueriesContext(connection) as queries:
            result = run_batch(
                get_definition("search_names"), slc.pk, OWNER, 20, BatchLimits.from_settings()
            )
        app.rollback()
    fills = [q["sql"] for q in queries.captured_queries if "WITH candidates" in q["sql"]]
    assert len(fills) == 1
    assert "UPDATE" in fills[0]
    assert "INSERT INTO" in fills[0]
    assert (result.rows_selected, result.rows_changed) == (19, 19)
    worked = Slice.objects.get(pk=slc.pk)
    assert (worked.rows_done, worked.cursor) == (19, str(keys[19]))
    assert worked.rows_skipped == 1
    assert Organization.objects.get(pk=held).search_name is None
    (log,) = Write.objects.filter(job_id=slc.job_id)
    written = dict(Organization.objects.filter(pk__in=keys[:20]).values_list("pk", "search_name"))
    expected = {str(k): v for k, v in written.items() if k != held}
    assert dict(zip(log.keys, log.values, strict=True)) == expected
    assert all(v == Organization.objects.get(pk=k).name.lower() for k, v in written.items() if v)


def test_a_subclass_that_overrides_fill_is_called_through_fill():
    assert get_definition("search_names").set_expression() is not None
    assert SearchNamesWithAWriter().set_expression() is None
