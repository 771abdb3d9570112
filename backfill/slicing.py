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
from backfill.models import Job, Slice
from backfill.registry import Definition


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
