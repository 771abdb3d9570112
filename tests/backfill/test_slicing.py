"""Hash shares: rows with one partition value stay in one slice, and shares split for idle workers."""

import contextvars
import threading
import time
from collections import defaultdict

import pytest
from django.db import connection

from backfill import local, service
from backfill.models import JobStatus, Slice, Write
from backfill.options import JobOptions
from backfill.registry import get_definition
from backfill.runner import work_slice
from backfill.slicing import Share, shares
from organizations import audit, naming
from organizations.models import Organization
from tests import data
from tests.invariants import assert_sound

pytestmark = pytest.mark.django_db(transaction=True)


def slices_by_base() -> dict[str, set[int]]:
    """Every base, and the slices whose batches named its rows (from the write log)."""
    names = dict(Organization.objects.values_list("pk", "name"))
    found: dict[str, set[int]] = defaultdict(set)
    for number, keys in Write.objects.values_list("slice_number", "keys"):
        for key in keys:
            found[naming.name_base(names[int(key)])].add(number)
    return found


def test_a_partitioned_definition_gets_one_hash_share_per_worker():
    definition = get_definition("admin_groups")
    assert shares(definition, 1, 100, 3) == [Share(1, 100, 3, r) for r in range(3)]
    plain = get_definition("search_names")
    assert [s.modulus for s in shares(plain, 1, 100, 2)] == [1] * 8


def test_every_base_is_named_by_one_slice_only(seed, local_queue, drain):
    seed(3_000, share=0.4, hot_share=0.2)
    job = drain(service.start("admin_groups", "test", JobOptions.build(batch_size=200)))
    assert job.status == JobStatus.SUCCEEDED
    by_base = slices_by_base()
    assert len(by_base) > 100
    assert {base for base, numbers in by_base.items() if len(numbers) > 1} == set()
    assert_sound(job)
    assert audit.skipped_numbers() == 0


def test_the_busiest_share_splits_when_a_worker_would_idle(seed, local_queue, drain):
    seed(6_000, hot_share=0.3)
    job = service.start("admin_groups", "test", JobOptions.build(batch_size=100, concurrency=2))
    first, second = local_queue.pop(), local_queue.pop()
    local.step(second, "test-owner", 0.001)  # one batch: the share has a cursor and a rate
    while Slice.objects.get(pk=first).status != "done":
        local.step(first, "test-owner", 0.5)
    # The first share is done; its worker would idle: the other share was halved for it.
    busy = Slice.objects.get(pk=second)
    assert busy.modulus == 4
    sibling = Slice.objects.get(job=job, modulus=4, residue=busy.residue + 2)
    assert sibling.cursor == busy.cursor
    assert sibling.pk in local_queue.queue
    job = drain(job)
    assert job.status == JobStatus.SUCCEEDED
    assert Organization.objects.filter(admin__isnull=True).count() == 0
    assert_sound(job)
    assert audit.skipped_numbers() == 0


BLOCKED_SPLIT = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
  AND query LIKE '%%backfill_slice%%FOR NO KEY UPDATE%%'
"""


def test_a_batch_never_waits_for_the_scheduler_holding_the_job(seed, local_queue):
    """The scheduler locks the job row while it splits a share (and waits for that
    share's batch); meanwhile every other batch inserts a sample, whose foreign
    key check takes a KEY SHARE lock on the same job row. FOR UPDATE would make
    those batches wait, and give up after their lock timeout."""
    seed(6_000, hot_share=0.3)
    service.start("admin_groups", "test", JobOptions.build(batch_size=100, concurrency=3))
    first, second, third = local_queue.pop(), local_queue.pop(), local_queue.pop()
    local.step(second, "test-owner", 0.001)  # the only share with a rate: the one to split
    # pg_stat_activity is read once per transaction: watch from a session of its own.
    with data.app_session() as session, data.app_session(autocommit=True) as watcher:
        # Another batch of the second share is in flight: its row is locked.
        session.execute("SELECT 1 FROM backfill_slice WHERE id = %s FOR UPDATE", [second])

        def finish_first() -> None:
            while Slice.objects.get(pk=first).status != "done":
                local.step(first, "first-owner", 0.5)
            connection.close()

        # The thread dispatches to the same local queue (a context variable).
        worker = threading.Thread(target=contextvars.copy_context().run, args=(finish_first,))
        worker.start()
        deadline = time.monotonic() + 30
        while watcher.execute(BLOCKED_SPLIT).fetchone() != (1,):
            assert time.monotonic() < deadline, "the split never waited on the second share"
            time.sleep(0.05)
        # One batch, without the hand-over (which would queue for the job row).
        work_slice(third, "third-owner", 0.001)
        session.rollback()
    worker.join()
    third_slice = Slice.objects.get(pk=third)
    assert third_slice.rows_done > 0
    assert third_slice.lock_timeouts_total == 0
    assert Slice.objects.get(pk=second).modulus == 6
