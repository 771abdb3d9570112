"""Settings made for one block of work never govern what the caller does next."""

from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper

from backfill.engine import service
from backfill.engine.options import JobOptions
from backfill.transactions import local_settings
from organizations.backfills import AdminGroups
from tests.data import seed

pytestmark = pytest.mark.django_db(transaction=True)

SEEN: dict[str, str] = {}


def show(cursor: CursorWrapper) -> dict[str, str]:
    cursor.execute("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")
    statement_timeout, lock_timeout = cursor.fetchone()
    return {"statement_timeout": statement_timeout, "lock_timeout": lock_timeout}


class RecordingAdminGroups(AdminGroups):
    """admin_groups, noting the timeouts its `prepare` runs under."""

    name = "test_recording_admin_groups"

    def prepare(self, cursor: CursorWrapper) -> dict[str, Any]:
        SEEN.update(show(cursor))
        return super().prepare(cursor)


def test_start_prepares_the_job_without_the_exact_counts_timeout(register, local_queue):
    register(RecordingAdminGroups)
    seed(300, share=0.2, existing_groups=20)
    with connection.cursor() as cursor:
        defaults = show(cursor)
        # An index plan for the pending rows: start counts them exactly, under a timeout.
        cursor.execute("SET enable_seqscan = off")
    try:
        service.start(RecordingAdminGroups.name, "test", JobOptions.build())
        with connection.cursor() as cursor:
            after = show(cursor)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_seqscan")
    assert defaults == SEEN
    assert after == defaults


def test_local_settings_end_with_their_block_inside_a_transaction():
    with transaction.atomic(), connection.cursor() as cursor:
        before = show(cursor)
        with local_settings({"statement_timeout": "2s", "lock_timeout": "1s"}) as inner:
            assert show(inner) == {"statement_timeout": "2s", "lock_timeout": "1s"}
        assert show(cursor) == before
        with pytest.raises(DatabaseError), local_settings({"statement_timeout": "10ms"}) as inner:
            inner.execute("SELECT pg_sleep(1)")
        assert show(cursor) == before
