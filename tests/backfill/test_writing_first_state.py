"""An expression's batches under any interleaving with the app: Hypothesis plays the app.

Batches of random sizes, writing first or locking first, on one slice of a
table where only some rows are pending, while the app fills pending rows
itself, renames rows (the expression's input), deletes rows and holds a row
FOR UPDATE across batches, against the real engine and database. After
every step: no row written twice, every logged value still in the table
and the expression over the row's name when the batch wrote it, and rows
that were never pending, or that the app filled first, never written. Once
the app lets go, the slice's batches finish it: every row that was pending
is filled, by the app or the job, and the log holds the job's rows exactly.
"""

from typing import Any

import psycopg
import pytest
from django.test import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from backfill.conf import BatchLimits
from backfill.engine import service
from backfill.engine.batch import run_batch
from backfill.engine.options import JobOptions
from backfill.models import Job, Slice, SliceStatus, Write
from backfill.registry import get_definition
from organizations.models import Organization
from tests.data import app_session, seed

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROWS = 60
OWNER = "writing-first-state"
# Rows that were never pending hold this; the app's own fills hold APP.
KEPT, APP = "kept by the app", "filled by the app"
ROW = st.integers(0, ROWS - 1)


class WritingFirst(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Each example starts from a table of its own: the last one deleted
        # and renamed rows.
        Organization.objects.all().delete()
        seed(ROWS)
        self.keys = list(Organization.objects.order_by("pk").values_list("pk", flat=True))
        self.definition = get_definition("search_names")
        self.limits = BatchLimits.from_settings()
        self.holder: psycopg.Connection[Any] | None = None
        self.held: int | None = None
        self.pending: set[int] = set()
        self.app_filled: set[int] = set()
        self.deleted: set[int] = set()
        # The name each row had when it was last renamed, for the logged values.
        self.names: dict[int, set[str]] = {}

    @initialize(pending=st.lists(st.booleans(), min_size=ROWS, max_size=ROWS))
    def start(self, pending: list[bool]) -> None:
        self.pending = {key for key, empty in zip(self.keys, pending, strict=True) if empty}
        if not self.pending:
            self.pending = {self.keys[0]}
        Organization.objects.exclude(pk__in=self.pending).update(search_name=KEPT)
        Organization.objects.filter(pk__in=self.pending).update(search_name=None)
        self.names = {k: {n} for k, n in Organization.objects.values_list("pk", "name")}
        with override_settings(BACKFILL_SLICES_PER_WORKER=1):
            job = service.start("search_names", "test", JobOptions.build(concurrency=1, pace=False))
        (slc,) = Slice.objects.filter(job=job)
        Slice.objects.filter(pk=slc.pk).update(lease_owner="", lease_expires_at=None)
        acquired = Slice.objects.acquire(slc.pk, OWNER, 600)
        assert acquired is not None
        self.slice_id = slc.pk

    def teardown(self) -> None:
        """The app lets go, the slice is worked to its end, and then every row
        that was pending holds a value, the app's or the job's, and the log
        holds exactly the rows the job filled."""
        try:
            if self.pending:
                self.finish()
                self.every_pending_row_is_filled_and_logged_once()
        finally:
            self.release()
            Job.objects.all().delete()
            Write.objects.all().delete()

    def every_pending_row_is_filled_and_logged_once(self) -> None:
        self.each_row_is_written_once_and_keeps_what_the_job_wrote()
        left = Organization.objects.filter(pk__in=self.pending, search_name__isnull=True)
        assert not left.exists(), f"left pending: {list(left.values_list('pk', flat=True))}"
        by_job = (
            self.pending
            - self.deleted
            - set(Organization.objects.filter(search_name=APP).values_list("pk", flat=True))
        )
        assert {key for key, _ in self.logged()} - self.deleted == by_job

    def slice(self) -> Slice:
        return Slice.objects.get(pk=self.slice_id)

    def free(self, key: int) -> bool:
        """A row the app may write now: not deleted, and not held by its own other session."""
        return key != self.held and key not in self.deleted

    @rule(size=st.integers(1, 25), lock_first=st.booleans())
    def batch(self, size: int, lock_first: bool) -> None:
        if self.slice().status == SliceStatus.DONE:
            return
        run_batch(self.definition, self.slice_id, OWNER, size, self.limits, lock_first=lock_first)

    @rule(row=ROW)
    def app_fills(self, row: int) -> None:
        key = self.keys[row]
        if self.free(key):
            filled = Organization.objects.filter(pk=key, search_name__isnull=True)
            if filled.update(search_name=APP):
                self.app_filled.add(key)

    @rule(row=ROW)
    def app_renames(self, row: int) -> None:
        key = self.keys[row]
        if self.free(key):
            name = f"Renamed {key} {len(self.names[key])}"
            Organization.objects.filter(pk=key).update(name=name)
            self.names[key].add(name)

    @rule(row=ROW)
    def app_deletes(self, row: int) -> None:
        key = self.keys[row]
        if self.free(key):
            Organization.objects.filter(pk=key).delete()
            self.deleted.add(key)

    @rule(row=ROW)
    def app_holds(self, row: int) -> None:
        key = self.keys[row]
        if self.held is None and key not in self.deleted:
            self.holder = app_session()
            self.holder.execute(
                "SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE", [key]
            )
            self.held = key

    @rule()
    def release(self) -> None:
        if self.holder is not None:
            self.holder.rollback()
            self.holder.close()
        self.holder, self.held = None, None

    def logged(self) -> list[tuple[int, str]]:
        return [
            (int(key), value)
            for write in Write.objects.filter(job__definition="search_names")
            for key, value in zip(write.keys, write.values, strict=True)
        ]

    @invariant()
    def each_row_is_written_once_and_keeps_what_the_job_wrote(self) -> None:
        logged = self.logged()
        keys = [key for key, _ in logged]
        assert len(keys) == len(set(keys)), "a row was written twice"
        now = dict(Organization.objects.filter(pk__in=keys).values_list("pk", "search_name"))
        for key, value in logged:
            assert key in self.pending, f"{key} was never pending"
            assert value not in (KEPT, APP)
            assert value in {name.lower() for name in self.names[key]}
            if key not in self.deleted:
                assert now[key] == value, f"{key}: {now[key]!r}, logged {value!r}"

    def finish(self) -> None:
        """The app lets go; batches run the slice to its end (held rows retried at once)."""
        self.release()
        for _ in range(200):
            slc = self.slice()
            if slc.status == SliceStatus.DONE:
                return
            if slc.retry_at is not None:
                Slice.objects.filter(pk=slc.pk).update(retry_at=None)
            run_batch(self.definition, self.slice_id, OWNER, 25, self.limits, lock_first=False)
        raise AssertionError("the slice did not finish")


def test_writing_first_batches_under_any_interleaving_with_the_app():
    run_state_machine_as_test(
        WritingFirst,
        settings=settings(
            max_examples=60,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
