"""A job (one run of a definition), its slices, batch samples and audit events.

Progress is stored on slices and summed for the job, so parallel batches never
contend on one job row; a slice's counters are advanced in the same transaction
as the data they count.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from backfill.conf import BatchLimits, Budgets
from backfill.querysets import JobQuerySet, SliceQuerySet
from backfill.statuses import ACTIVE_STATUSES, JobStatus, SliceStatus

__all__ = [
    "ACTIVE_STATUSES",
    "Event",
    "Job",
    "JobStatus",
    "Sample",
    "Slice",
    "SliceStatus",
    "Write",
]


class Job(models.Model):
    definition = models.CharField(max_length=100, db_index=True)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.PENDING)
    batch_size = models.PositiveIntegerField()
    concurrency = models.PositiveIntegerField()
    pause_ms = models.PositiveIntegerField(default=0)
    # The table's lowest and highest key when the job began, in the key's text
    # form (any orderable key: integers, UUIDs, text); the slices cover every
    # key up to key_high, and it grows if pending rows appear beyond it.
    # Null, not "", for none: "" is a valid text key.
    key_low = models.TextField(null=True)  # noqa: DJ001
    key_high = models.TextField(null=True)  # noqa: DJ001
    rows_total = models.BigIntegerField(default=0)
    # Health-aware pacing (backfill/pacing/): on unless the job says off, with its
    # budgets (0: none) and what the workers found, for people to see.
    pace = models.BooleanField(default=True)
    max_latency_ratio = models.FloatField(default=2.0)
    max_replica_lag_seconds = models.FloatField(default=5.0)
    max_transaction_age_seconds = models.FloatField(default=300.0)
    max_wal_mb_per_second = models.FloatField(default=0.0)
    latency_baseline_ms = models.FloatField(null=True)
    pace_pause_ms = models.PositiveIntegerField(default=0)
    pace_limit = models.CharField(max_length=30, blank=True)
    throttled_seconds = models.FloatField(default=0.0)
    # The end of the latest wait counted in `throttled_seconds`: slices waiting at
    # the same time count the wall time once, not once each.
    throttled_until = models.DateTimeField(null=True)
    # Workers that may write at once while latency has shed some; None: all of `concurrency`.
    pace_workers = models.PositiveIntegerField(null=True)
    # Until then the job's last worker writing stays at its floor over the latency
    # budget: a worker found that pausing did not lower the latency
    # (pacing.PauseEvidence), and a worker process the slice moves to must not
    # pause to learn that again.
    pause_given_up_until = models.DateTimeField(null=True)
    rows_total_is_estimate = models.BooleanField(default=True)
    context = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # "web:" or "cli:" and a username (Django allows 150 characters).
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    # Set when a revert begins (the fill can no longer be retried) and ends.
    revert_started_at = models.DateTimeField(null=True)
    reverted_at = models.DateTimeField(null=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        # Reverting deletes what the job wrote: a grant apart from changing jobs.
        permissions = [("revert_job", "Can revert a job (undo what it filled)")]
        constraints = [
            models.UniqueConstraint(
                fields=["definition"],
                condition=Q(status__in=ACTIVE_STATUSES),
                name="backfill_one_active_job_per_definition",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.definition} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def workers_writing(self) -> int:
        """How many of the job's workers may write at once now (pacing may have shed some).

        Only a running job is paced: a revert started after workers were shed
        runs with all of them.
        """
        if self.status != JobStatus.RUNNING:
            return self.concurrency
        return min(self.concurrency, self.pace_workers or self.concurrency)

    @property
    def budgets(self) -> Budgets:
        return Budgets(
            latency_ratio=self.max_latency_ratio,
            replica_lag_seconds=self.max_replica_lag_seconds,
            transaction_age_seconds=self.max_transaction_age_seconds,
            wal_mb_per_second=self.max_wal_mb_per_second,
        )


class Slice(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="slices")
    number = models.PositiveIntegerField()
    # The slice covers keys in (after, high], in the key's text form, compared
    # by PostgreSQL as the key's own type; `after` is null for the first slice
    # (no lower bound). Keys in (cursor, high] are still to visit in this pass;
    # a pass starts with cursor = after.
    after = models.TextField(null=True)  # noqa: DJ001
    high = models.TextField()
    cursor = models.TextField(null=True)  # noqa: DJ001
    # Pending rows counted in (after, high] when the slice was made.
    rows_expected = models.BigIntegerField(default=0)
    # The rows of [low, high] whose partition hash modulo `modulus` is
    # `residue` (see slicing.py); 1 and 0 for a slice of plain key ranges.
    modulus = models.PositiveIntegerField(default=1)
    residue = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=20, choices=SliceStatus.choices, default=SliceStatus.PENDING
    )
    # Who works the slice and until when. A dispatched slice gets an expiry and
    # no owner, so a lost message is noticed when the expiry passes.
    lease_owner = models.CharField(max_length=255, blank=True)
    lease_expires_at = models.DateTimeField(null=True)
    # Consecutive attempts without a committed batch; reset by every success.
    attempts = models.PositiveIntegerField(default=0)
    # Consecutive batches that gave up waiting for a lock; reset likewise.
    lock_timeouts = models.PositiveIntegerField(default=0)
    # Every batch that gave up waiting for a lock, never reset: with no app
    # writing, each one is the job waiting on itself.
    lock_timeouts_total = models.PositiveIntegerField(default=0)
    batch_size = models.PositiveIntegerField()
    rows_done = models.BigIntegerField(default=0)
    # Rows a revert of the job put back, counted like rows_done.
    rows_reverted = models.BigIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    # Rows passed over because another transaction held them; a slice with any
    # makes another pass before it is done.
    rows_skipped = models.BigIntegerField(default=0)
    passes = models.PositiveIntegerField(default=1)
    # After BACKFILL_HELD_ROW_PASSES passes that skipped rows, the slice stops
    # rescanning its range and retries only these keys, with back-off, not
    # before `retry_at`; `held` names who holds them (pid, state, age, query).
    held_keys = models.JSONField(default=list, blank=True)
    held = models.JSONField(default=list, blank=True)
    held_tries = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True)
    failed_batches = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SliceQuerySet.as_manager()

    class Meta:
        ordering = ["job_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="backfill_slice_number_unique"),
            models.CheckConstraint(
                condition=Q(residue__lt=models.F("modulus")), name="backfill_slice_share"
            ),
        ]

    def __str__(self) -> str:
        return f"slice {self.number} of job {self.job_id} ({self.after or ''}, {self.high}]"

    def share_parameters(self) -> dict[str, int | list[int]]:
        """The values of a definition's {share} condition for this slice."""
        return {
            "modulus": self.modulus,
            "others": [r for r in range(self.modulus) if r != self.residue],
        }

    def out_of_budget(self, limits: BatchLimits) -> bool:
        return (
            self.attempts >= limits.max_attempts or self.lock_timeouts >= limits.max_lock_timeouts
        )

    def failure_summary(self, limits: BatchLimits) -> str:
        """Why the slice gave up, in one line for the job's error."""
        first_line = self.last_error.splitlines()[0] if self.last_error else "unknown error"
        if self.lock_timeouts >= limits.max_lock_timeouts:
            why = (
                f"{self.lock_timeouts} lock timeouts in a row at {self.batch_size} rows "
                "(another transaction keeps holding locks its batches need)"
            )
        else:
            why = f"{self.attempts} attempts"
        return f"slice {self.number} failed after {why}: {first_line}"


class Sample(models.Model):
    """One committed batch: the raw figures behind rate, ETA and charts."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="samples")
    slice_number = models.PositiveIntegerField()
    rows = models.PositiveIntegerField()
    batch_size = models.PositiveIntegerField()
    duration_ms = models.FloatField()
    # The pause the worker took after this batch, and the signal that set it.
    pause_ms = models.PositiveIntegerField(default=0)
    limit = models.CharField(max_length=30, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "-id"], name="backfill_sample_job_recent")]

    def __str__(self) -> str:
        return f"{self.rows} rows in {self.duration_ms:.0f} ms"


class Event(models.Model):
    """The audit trail: every status change and action, with who and when."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=40)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    actor = models.CharField(max_length=200)
    detail = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action}"


class Write(models.Model):
    """One committed batch's writes: the keys it filled and the values it wrote.

    What revert may undo, and only that (see engine/write_log.py). Written in the
    batch's transaction; kept with the job for as long as the job is, so a
    revert can come any time later.
    """

    # No database constraint: a deferred foreign-key check would run at every
    # batch's COMMIT. Rows go with their job through Django's cascade.
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="writes", db_constraint=False, db_index=False
    )
    slice_number = models.PositiveIntegerField()
    keys = ArrayField(models.TextField())
    values = ArrayField(models.TextField())

    class Meta:
        indexes = [models.Index(fields=["job", "slice_number", "id"], name="backfill_write_slice")]

    def __str__(self) -> str:
        return f"{len(self.keys)} writes of slice {self.slice_number}"
