"""Hash shares: rows with one partition value stay in one slice, and shares split for idle workers."""

import contextvars
import itertools
import threading
from collections import defaultdict

import pytest
from django.db import connection

from backfill.engine import local, service
from backfill.engine.checker import PendingCount
from backfill.engine.options import JobOptions
from backfill.engine.runner import work_slice
from backfill.engine.slicing import sample_percent, shares
from backfill.models import JobStatus, Slice, Write
from backfill.registry import get_definition
from organizations import audit, naming
from organizations.models import Organization
from tests.data import app_session, seed
from tests.invariants import assert_sound
from tests.processes import wait_for

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
    seed(3_000, share=0.2, existing_groups=20, hot_share=0.2)
    definition = get_definition("admin_groups")
    high = str(Organization.objects.order_by("-pk").values_list("pk", flat=True)[0])
    made = shares(definition, None, high, 3)
    assert [(s.after, s.high, s.modulus, s.residue) for s in made] == [
        (None, high, 3, r) for r in range(3)
    ]
    # Counted per share: the one with "My Company" has at least a fifth of the rows.
    assert sum(s.rows for s in made) == Organization.objects.filter(admin__isnull=True).count()
    assert max(s.rows for s in made) >= 600


def test_plain_ranges_are_cut_at_quantiles_of_the_pending_keys():
    """Pending rows bunched at the start of the keys, and a gap of 10^9 after them:
    equal key ranges would put them all in the first slice."""
    seed(2_000, share=0.2, existing_groups=20)
    keys = list(Organization.objects.order_by("pk").values_list("pk", flat=True))
    Organization.objects.filter(pk__in=keys[600:]).update(search_name="done")
    Organization.objects.filter(pk=keys[-1]).update(id=keys[-1] + 10**9)
    plain = get_definition("search_names")
    high = str(keys[-1] + 10**9)
    made = shares(plain, None, high, 2)
    assert len(made) == 8
    assert made[0].after is None
    assert made[-1].high == high
    assert all(a.high == b.after for a, b in itertools.pairwise(made))
    pending = Organization.objects.filter(search_name__isnull=True)
    per_slice = [
        pending.filter(pk__lte=int(s.high), **({"pk__gt": int(s.after)} if s.after else {})).count()
        for s in made
    ]
    assert sum(per_slice) == 600
    assert all(70 <= n <= 80 for n in per_slice), per_slice
    assert [s.rows for s in made] == [75] * 8


def test_every_base_is_named_by_one_slice_only(local_queue, drain):
    seed(3_000, share=0.4, existing_groups=20, hot_share=0.2)
    job = drain(service.start("admin_groups", "test", JobOptions.build(batch_size=200)))
    assert job.status == JobStatus.SUCCEEDED
    by_base = slices_by_base()
    assert len(by_base) > 100
    assert {base for base, numbers in by_base.items() if len(numbers) > 1} == set()
    assert_sound(job)
    assert audit.skipped_numbers() == 0


def test_the_busiest_share_splits_when_a_worker_would_idle(local_queue, drain):
    seed(6_000, share=0.2, existing_groups=20, hot_share=0.3)
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


@pytest.mark.parametrize("pace", [False, True], ids=["unpaced", "paced"])
def test_a_batch_never_waits_for_the_scheduler_holding_the_job(local_queue, pace):
    """The scheduler locks the job row while it splits a share (and waits for that
    share's batch); meanwhile every other batch inserts a sample, whose foreign
    key check takes a KEY SHARE lock on the same job row. FOR UPDATE would make
    those batches wait, and give up after their lock timeout; and a worker
    showing its pace on the job row must not queue behind the scheduler either."""
    seed(6_000, share=0.2, existing_groups=20, hot_share=0.3)
    # No latency budget: on a busy machine the probe could shed the first worker,
    # and no split would follow its share. The pace is still shown on the job row.
    budgets: dict[str, float | None] | None = {"latency_ratio": 0.0} if pace else None
    options = JobOptions.build(batch_size=100, concurrency=3, pace=pace, budgets=budgets)
    service.start("admin_groups", "test", options)
    popped = [local_queue.pop() for _ in range(3)]
    # The share with "My Company" has the most rows ahead: the one to split.
    second = max(popped, key=lambda pk: Slice.objects.get(pk=pk).rows_expected)
    first, third = (pk for pk in popped if pk != second)
    local.step(second, "test-owner", 0.001)
    # pg_stat_activity is read once per transaction: watch from a session of its own.
    with app_session() as session, app_session(autocommit=True) as watcher:
        # Another batch of the second share is in flight: its row is locked.
        session.execute("SELECT 1 FROM backfill_slice WHERE id = %s FOR UPDATE", [second])

        def finish_first() -> None:
            while Slice.objects.get(pk=first).status != "done":
                local.step(first, "first-owner", 0.5)
            connection.close()

        # The thread dispatches to the same local queue (a context variable).
        worker = threading.Thread(target=contextvars.copy_context().run, args=(finish_first,))
        worker.start()
        # The split comes to wait on the second share.
        wait_for(lambda: watcher.execute(BLOCKED_SPLIT).fetchone() == (1,), 30, interval=0.05)
        # One batch, without the hand-over (which would queue for the job row).
        work_slice(third, "third-owner", 0.001)
        session.rollback()
    worker.join()
    third_slice = Slice.objects.get(pk=third)
    assert third_slice.rows_done > 0
    assert third_slice.lock_timeouts_total == 0
    assert Slice.objects.get(pk=second).modulus == 6


def test_a_key_range_splits_at_the_median_of_its_rows_ahead(local_queue, drain, settings):
    settings.BACKFILL_SLICES_PER_WORKER = 1
    seed(6_000, share=0.2, existing_groups=20)
    job = service.start("search_names", "test", JobOptions.build(batch_size=100, concurrency=2))
    first, second = local_queue.pop(), local_queue.pop()
    local.step(second, "test-owner", 0.001)
    high = Slice.objects.get(pk=second).high
    while Slice.objects.get(pk=first).status != "done":
        local.step(first, "test-owner", 0.5)
    busy = Slice.objects.get(pk=second)
    sibling = Slice.objects.get(job=job, after=busy.high)
    assert sibling.high == high
    assert sibling.cursor == sibling.after
    assert sibling.pk in local_queue.queue
    pending = Organization.objects.filter(search_name__isnull=True)
    assert busy.cursor is not None
    middle = sibling.after
    assert middle is not None
    mine = pending.filter(pk__gt=int(busy.cursor), pk__lte=int(busy.high)).count()
    theirs = pending.filter(pk__gt=int(middle), pk__lte=int(sibling.high)).count()
    assert abs(mine - theirs) <= 1
    job = drain(job)
    assert job.status == JobStatus.SUCCEEDED
    assert pending.count() == 0


def test_above_the_exact_limit_bounds_come_from_a_block_sample(settings):
    """A large table's quantiles from a sample: bounds still cover every key, in
    order, and the rows each slice was made for are scaled up from the sample."""
    settings.BACKFILL_EXACT_BOUNDS_ROWS = 100
    settings.BACKFILL_BOUNDS_SAMPLE_ROWS = 4_000
    seed(20_000, share=0.2, existing_groups=20)
    plain = get_definition("search_names")
    high = str(Organization.objects.order_by("-pk").values_list("pk", flat=True)[0])
    total = PendingCount(20_000, False)
    assert sample_percent(total) == 20.0
    assert sample_percent(PendingCount(20_000, True)) == 20.0  # an estimate: sampled too
    assert sample_percent(PendingCount(50, False)) is None  # under the limit: every key
    made = shares(plain, None, high, 2, total)
    assert made[0].after is None
    assert made[-1].high == high
    assert all(a.high == b.after for a, b in itertools.pairwise(made))
    assert [int(s.high) for s in made] == sorted(int(s.high) for s in made)
    assert 10_000 <= sum(s.rows for s in made) <= 30_000
