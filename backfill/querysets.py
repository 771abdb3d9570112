"""The lookups the engine repeats, and the slice's lease and failure bookkeeping.

A lease says which worker owns a slice until when; a dispatched slice gets an
expiry and no owner, so a lost message is noticed when the expiry passes.
Attempts and lock timeouts count consecutive failures and are reset by every
committed batch; running out of either fails the slice (the caller then fails
the job: this layer never changes a job's status).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from backfill.conf import BatchLimits
from backfill.faults import Failure
from backfill.statuses import (
    ACTIVE_STATUSES,
    OPEN_SLICE_STATUSES,
    WORKING_STATUSES,
    SliceStatus,
)

if TYPE_CHECKING:
    from backfill.models import Job, Slice


class LeaseLost(Exception):
    """Another worker owns the slice now; this one must stop touching it."""


class JobQuerySet(models.QuerySet["Job"]):
    def of(self, name: str) -> JobQuerySet:
        return self.filter(definition=name)

    def active(self) -> JobQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def latest_for(self, name: str) -> Job | None:
        return self.of(name).order_by("-id").first()


class SliceQuerySet(models.QuerySet["Slice"]):
    def open(self) -> SliceQuerySet:
        return self.filter(status__in=OPEN_SLICE_STATUSES)

    def failed(self) -> SliceQuerySet:
        return self.filter(status=SliceStatus.FAILED)

    def in_flight(self, now: datetime) -> SliceQuerySet:
        """Dispatched or leased, and the lease has not expired."""
        return self.filter(lease_expires_at__gt=now)

    def free(self, now: datetime) -> SliceQuerySet:
        """Neither leased nor waiting out a back-off."""
        return self.filter(
            Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now),
            Q(retry_at__isnull=True) | Q(retry_at__lte=now),
        )

    def waiting(self, now: datetime) -> SliceQuerySet:
        """Not leased, and waiting out a back-off (held rows, a paced stop)."""
        return self.filter(
            Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now),
            retry_at__gt=now,
        )

    def leased(self, now: datetime) -> SliceQuerySet:
        """Owned by a worker right now (not only dispatched)."""
        return self.in_flight(now).exclude(lease_owner="")

    def rows_done(self) -> int:
        return int(self.aggregate(total=Sum("rows_done"))["total"] or 0)

    def reopen(self, **changes: Any) -> int:
        """Back to pending with fresh budgets and no lease, so the scheduler takes them."""
        return self.update(
            status=SliceStatus.PENDING,
            attempts=0,
            lock_timeouts=0,
            lease_owner="",
            lease_expires_at=None,
            retry_at=None,
            **changes,
        )

    def drop_reservations(self) -> int:
        """Forget dispatches no worker took: while the job was paused (or
        failed) their messages found it so and went away, and the slots they
        reserve (until the wait of a waiting slice is over, and a lease
        after) would stay empty until then. A message still on its way finds
        the slice taken, or takes it."""
        return self.filter(lease_owner="", lease_expires_at__isnull=False).update(
            lease_expires_at=None
        )

    def acquire(self, slice_id: int, owner: str, lease_seconds: int) -> Slice | None:
        """Take the slice's lease if it is free (or expired) and its job is working.

        Attempts go up with every acquisition and back to zero with every
        committed batch, so a batch that kills its worker outright still fails
        the slice after BACKFILL_MAX_ATTEMPTS deliveries instead of looping.
        """
        now = timezone.now()
        taken = (
            self.open()
            .filter(pk=slice_id, job__status__in=WORKING_STATUSES)
            .filter(Q(lease_owner="") | Q(lease_expires_at__lt=now))
            .update(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                status=SliceStatus.RUNNING,
                attempts=F("attempts") + 1,
            )
        )
        if not taken:
            return None
        return self.select_related("job").get(pk=slice_id)

    def release(self, slice_id: int, owner: str, retry_in: float | None = None) -> None:
        """Give the slice back; with `retry_in`, no one takes it again before then."""
        retry_at = timezone.now() + timedelta(seconds=retry_in) if retry_in else None
        self.filter(pk=slice_id, lease_owner=owner).update(
            lease_owner="", lease_expires_at=None, retry_at=retry_at
        )

    def locked_for(self, slice_id: int, owner: str) -> Slice:
        """The slice row, locked until commit, if this owner still holds its lease."""
        slc = self.select_for_update(no_key=True).get(pk=slice_id)
        if slc.lease_owner != owner or slc.status != SliceStatus.RUNNING:
            raise LeaseLost(f"slice {slice_id} is leased by {slc.lease_owner or 'nobody'}")
        return slc

    def record_failure(
        self, slice_id: int, owner: str, failure: Failure, limits: BatchLimits
    ) -> Slice:
        """Count a failed batch; the slice fails when either budget runs out."""
        with transaction.atomic():
            slc = self.locked_for(slice_id, owner)
            slc.attempts = max(0, slc.attempts + failure.attempt)
            slc.lock_timeouts = slc.lock_timeouts + 1 if failure.lock_timeout else 0
            slc.lock_timeouts_total += 1 if failure.lock_timeout else 0
            slc.failed_batches += 1
            slc.last_error = failure.error
            if failure.next_size is not None:
                slc.batch_size = failure.next_size
            if slc.out_of_budget(limits):
                slc.status = SliceStatus.FAILED
            slc.save(
                update_fields=[
                    "attempts",
                    "lock_timeouts",
                    "lock_timeouts_total",
                    "failed_batches",
                    "last_error",
                    "batch_size",
                    "status",
                    "updated_at",
                ]
            )
        return slc
