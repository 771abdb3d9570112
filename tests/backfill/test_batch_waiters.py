"""A batch knows who queued behind it, and the size follows: long batches only while
nobody waits on them."""

import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from django.db.backends.utils import CursorWrapper

from backfill.conf import BatchLimits
from backfill.engine import runner, service
from backfill.engine.batch import run_batch
from backfill.engine.options import JobOptions
from backfill.engine.runner import SliceWork
from backfill.models import Slice
from backfill.registry import Row, get_definition
from organizations.backfills import AdminGroups
from tests.data import app_session, seed

pytestmark = pytest.mark.django_db(transaction=True)

OWNER = "waiters-test"


def waiting_sessions() -> int:
    with app_session(autocommit=True) as session:
        row = session.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
        return int(row[0]) if row else 0


@pytest.fixture
def app_write_during_fill(monkeypatch) -> Iterator[list[threading.Thread]]:
    """During each fill, an app session updates the batch's first row and queues
    behind the batch's lock until it commits, 0.2 s later."""
    writers: list[threading.Thread] = []
    fill = AdminGroups.fill

    def update(key: int) -> None:
        with app_session() as session:
            session.execute(
                "UPDATE organizations_organization SET name = name WHERE id = %s", [key]
            )
            session.commit()

    def fill_with_a_writer(self: AdminGroups, cursor: CursorWrapper, rows: Sequence[Row]) -> int:
        filled = fill(self, cursor, rows)
        writer = threading.Thread(target=update, args=(rows[0][0],))
        writer.start()
        writers.append(writer)
        deadline = time.monotonic() + 5
        while not waiting_sessions() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # a batch well over the short target, with the writer waiting
        return filled

    monkeypatch.setattr(AdminGroups, "fill", fill_with_a_writer)
    yield writers
    for writer in writers:
        writer.join(timeout=10)


def leased_slice(local_queue: object) -> Slice:
    seed(300)
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=1, pace=False))
    slc = Slice.objects.filter(job=job).order_by("number").first()
    assert slc is not None
    Slice.objects.filter(pk=slc.pk).update(lease_owner="", lease_expires_at=None)
    acquired = Slice.objects.acquire(slc.pk, OWNER, 60)
    assert acquired is not None
    return acquired


def test_a_batch_counts_the_app_session_queued_behind_one_of_its_rows(
    local_queue, app_write_during_fill
):
    slc = leased_slice(local_queue)
    limits = BatchLimits.from_settings()
    result = run_batch(get_definition("admin_groups"), slc.pk, OWNER, 50, limits)
    assert result.rows_changed == 50
    assert result.waiters == 1
    app_write_during_fill[0].join(timeout=10)
    assert not app_write_during_fill[0].is_alive()  # it went on once the batch committed


def test_a_batch_nobody_waits_on_counts_no_one(local_queue):
    slc = leased_slice(local_queue)
    result = run_batch(
        get_definition("admin_groups"), slc.pk, OWNER, 50, BatchLimits.from_settings()
    )
    assert (result.rows_changed, result.waiters) == (50, 0)


def test_a_waiter_cuts_the_next_batch_and_keeps_the_short_target(
    settings, local_queue, app_write_during_fill
):
    settings.BACKFILL_BATCH_SIZE = 100
    slc = leased_slice(local_queue)
    Slice.objects.filter(pk=slc.pk).update(lease_owner="", lease_expires_at=None)
    runner.last_waited.pop(slc.job_id, None)
    SliceWork(slc.pk, OWNER, budget_seconds=1.0).run()
    assert slc.job_id in runner.last_waited
    # Each batch ran while a session waited on it, longer than the 0.05 s target:
    # the batches after the first were cut (the slice keeps the last one's size).
    worked = Slice.objects.get(pk=slc.pk)
    assert worked.batches > 1, (worked.batches, worked.rows_done, worked.status)
    assert worked.batch_size < 100
