"""How a job's rows are divided among its slices.

By key range, so each slice walks its own part of the key index; or, for a
definition that declares a `partition_key`, by a hash of that key, each slice
walking the whole range for its share of the hashes. The second reads every
pending row once per slice, a small price next to a fill, and buys the one
thing key ranges cannot give: rows that share a partition value (every "My
Company", whose names come from one counter) are all in one slice, so the
slices never queue behind each other's locks.
"""

from dataclasses import dataclass

from backfill import conf
from backfill.models import Job, JobStatus, Slice
from backfill.registry import Definition, get_definition


@dataclass(frozen=True)
class Share:
    low: int
    high: int
    modulus: int = 1
    residue: int = 0


def split(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """Disjoint, contiguous key ranges covering [low, high]."""
    span = high - low + 1
    parts = max(1, min(parts, span))
    step = span // parts
    bounds = [low + i * step for i in range(parts)] + [high + 1]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(parts)]


def shares(definition: Definition, low: int, high: int, concurrency: int) -> list[Share]:
    """The slices for keys [low, high]: hash shares, one per worker, for a partitioned
    definition; else BACKFILL_SLICES_PER_WORKER key ranges per worker."""
    if definition.partition_key is not None:
        return [Share(low, high, concurrency, residue) for residue in range(concurrency)]
    parts = concurrency * conf.get_int("BACKFILL_SLICES_PER_WORKER")
    return [Share(lo, hi) for lo, hi in split(low, high, parts)]


def add_slices(job: Job, definition: Definition, low: int, high: int) -> None:
    """Slices for keys [low, high], numbered after the job's existing ones."""
    first = Slice.objects.filter(job=job).count()
    Slice.objects.bulk_create(
        Slice(
            job=job,
            number=first + i,
            low=share.low,
            high=share.high,
            cursor=share.low - 1,
            modulus=share.modulus,
            residue=share.residue,
            batch_size=job.batch_size,
        )
        for i, share in enumerate(shares(definition, low, high, job.concurrency))
    )


# A hash share is halved for an idle worker only while it has at least this
# many batches of rows left, and never finer than this modulus.
SPLIT_MIN_BATCHES = 10
MAX_MODULUS = 64


def rows_left(slc: Slice) -> float:
    """Rows a slice in its first pass still has, extrapolated from the keys it walked."""
    walked = slc.cursor - slc.low + 1
    if walked <= 0 or slc.passes > 1 or slc.held_keys:
        return 0.0
    return slc.rows_done * (slc.high - slc.cursor) / walked


def split_busiest(job: Job) -> Slice | None:
    """Halve the hash share with the most rows left, for a worker that would idle.

    One share holds every row of its hottest partition value, so shares are
    uneven ("My Company" is a fifth of the table). The busiest share keeps
    the rows whose hash modulo twice its modulus is its residue; a new slice,
    at the same cursor, takes the others. The share is locked first, so the
    split lands between two of its batches, and the worker on it reads its
    new share with its next batch.
    """
    if job.status != JobStatus.RUNNING or get_definition(job.definition).partition_key is None:
        return None
    open_slices = Slice.objects.filter(job=job).open().filter(modulus__lt=MAX_MODULUS)
    busiest = max(open_slices, key=rows_left, default=None)
    if busiest is None or rows_left(busiest) < SPLIT_MIN_BATCHES * busiest.batch_size:
        return None
    slc = Slice.objects.select_for_update(no_key=True).get(pk=busiest.pk)
    if rows_left(slc) < SPLIT_MIN_BATCHES * slc.batch_size:
        return None
    sibling = Slice.objects.create(
        job=job,
        number=Slice.objects.filter(job=job).count(),
        low=slc.low,
        high=slc.high,
        cursor=slc.cursor,
        modulus=slc.modulus * 2,
        residue=slc.residue + slc.modulus,
        passes=slc.passes,
        rows_skipped=slc.rows_skipped,
        batch_size=slc.batch_size,
    )
    slc.modulus *= 2
    slc.save(update_fields=["modulus", "updated_at"])
    return sibling
