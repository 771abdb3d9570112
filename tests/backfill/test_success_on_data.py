"""A job succeeds only when the data says so: no pending row left in its range."""

from collections.abc import Sequence
from typing import Any

import pytest
from django.db.backends.utils import CursorWrapper

from backfill.engine import checker, service
from backfill.engine.options import JobOptions
from backfill.models import Event, JobStatus
from backfill.registry import Row, get_definition
from organizations.backfills import SearchNames
from organizations.models import Organization
from tests.data import seed

pytestmark = pytest.mark.django_db(transaction=True)

WRITER: dict[str, Any] = {"victim": None, "emptied": False, "never": None}


class SearchNamesWithAWriter(SearchNames):
    """search_names, while a writer empties a row whose batch has already committed."""

    name = "test_search_names_with_a_writer"

    def fill(self, cursor: CursorWrapper, rows: Sequence[Row]) -> int:
        victim = WRITER["victim"]
        if not WRITER["emptied"] and victim is not None and rows[0][0] > victim:
            cursor.execute(
                "UPDATE organizations_organization SET search_name = NULL WHERE id = %s", [victim]
            )
            WRITER["emptied"] = True
        keep_empty = WRITER["never"]
        return super().fill(cursor, [row for row in rows if row[0] != keep_empty])


def empty_search_names() -> None:
    Organization.objects.update(search_name=None)


def test_a_row_emptied_after_its_batch_is_filled_before_the_job_succeeds(
    register, local_queue, drain
):
    register(SearchNamesWithAWriter)
    seed(1_000, share=0.2, existing_groups=20)
    empty_search_names()
    keys = list(Organization.objects.order_by("pk").values_list("pk", flat=True))
    WRITER.update(victim=keys[10], emptied=False, never=None)
    job = service.start(SearchNamesWithAWriter.name, "test", JobOptions.build(batch_size=100))
    job = drain(job)
    assert WRITER["emptied"]
    assert job.status == JobStatus.SUCCEEDED
    assert Event.objects.filter(job=job, action="recheck").count() == 1
    assert checker.check(get_definition(SearchNamesWithAWriter.name)).pending == 0


def test_a_row_fill_never_fills_fails_the_job_after_the_recheck_budget(
    register, local_queue, drain, settings
):
    register(SearchNamesWithAWriter)
    settings.BACKFILL_MAX_RECHECKS = 2
    seed(300, share=0.2, existing_groups=20)
    empty_search_names()
    never = Organization.objects.order_by("pk").values_list("pk", flat=True)[5]
    WRITER.update(victim=None, emptied=False, never=never)
    job = drain(service.start(SearchNamesWithAWriter.name, "test", JobOptions.build()))
    assert job.status == JobStatus.FAILED
    assert "still pending after 2 rechecks" in job.error


def test_a_retry_once_the_cause_is_gone_gets_its_rechecks_back_and_succeeds(
    register, local_queue, drain, settings
):
    register(SearchNamesWithAWriter)
    settings.BACKFILL_MAX_RECHECKS = 2
    seed(300, share=0.2, existing_groups=20)
    empty_search_names()
    never = Organization.objects.order_by("pk").values_list("pk", flat=True)[5]
    WRITER.update(victim=None, emptied=False, never=never)
    job = drain(service.start(SearchNamesWithAWriter.name, "test", JobOptions.build()))
    assert job.status == JobStatus.FAILED
    WRITER.update(never=None)  # fill() fixed
    assert service.retry(SearchNamesWithAWriter.name, "test").status == JobStatus.RUNNING
    job = drain(job)
    assert job.status == JobStatus.SUCCEEDED
    assert checker.check(get_definition(SearchNamesWithAWriter.name)).pending == 0
