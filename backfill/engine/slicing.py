"""How a job's rows are divided among its slices.

By key range, cut where the pending rows are: the bounds are quantiles of the
pending keys, so each slice has about as many rows to fill whatever the keys
look like (legacy rows bunched at the oldest ids, a sequence with a gap of
10^12, random UUIDs). Or, for a definition that declares a `partition_key`,
by a hash of that key, each slice walking the whole range for its share of
the hashes: rows that share a partition value (every "My Company", whose
names come from one counter) are all in one slice, so the slices never queue
behind each other's locks. Either way, a slice that still has many rows when
a worker would idle is split in two.

Keys are kept in their text form and compared by PostgreSQL as the key's own
type, so the same code walks integers, UUIDs and text keys.
"""

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import F
from psycopg import sql

from backfill import conf
from backfill.engine.checker import PendingCount
from backfill.models import Job, JobStatus, Slice
from backfill.registry import Definition, get_definition


@dataclass(frozen=True)
class Share:
    """The rows of (after, high] whose partition hash modulo `modulus` is `residue`."""

    after: str | None
    high: str
    rows: int = 0
    modulus: int = 1
    residue: int = 0


def as_key(value: Any) -> str | None:
    """A key as the engine keeps it: PostgreSQL's text form, None for none."""
    return None if value is None else str(value)


# Every pending key of the range, or those of a block sample of the table; the
# sample's cost follows the rows it reads, not the table's size.
QUANTILES_SQL = """
SELECT count(*), percentile_disc(%(fractions)s::float8[]) WITHIN GROUP (ORDER BY {key})::text[]
FROM {table} {sample} WHERE {in_range} AND ({pending})
"""

RESIDUES_SQL = """
SELECT mod({hash}, %(modulus)s), count(*)
FROM {table} {sample} WHERE {in_range} AND ({pending}) GROUP BY 1
"""


def sample_percent(total: PendingCount | None) -> float | None:
    """None to read every pending key; else the share of the table's blocks to sample."""
    if total is None:
        return None
    if not total.is_estimate and total.rows <= conf.current().exact_bounds_rows:
        return None
    percent = 100.0 * conf.current().bounds_sample_rows / max(total.rows, 1)
    return None if percent >= 100 else max(percent, 0.0001)


def sample_clause(percent: float | None) -> sql.Composable:
    if percent is None:
        return sql.SQL("")
    return sql.SQL("TABLESAMPLE SYSTEM ({})").format(sql.Literal(percent))


def scaled(rows: int, percent: float | None) -> int:
    return rows if percent is None else round(rows * 100 / percent)


def shares(
    definition: Definition,
    after: str | None,
    high: str,
    concurrency: int,
    total: PendingCount | None = None,
) -> list[Share]:
    """The slices for keys (after, high]: hash shares, one per worker, for a
    partitioned definition; else BACKFILL_SLICES_PER_WORKER ranges per worker
    with as many pending rows each."""
    percent = sample_percent(total)
    bounds = {"after": after, "high": high}
    with connection.cursor() as cursor:
        if definition.partition_key is not None:
            return hash_shares(cursor, definition, bounds, concurrency, percent)
        parts = concurrency * conf.current().slices_per_worker
        return range_shares(cursor, definition, bounds, parts, percent)


def hash_shares(
    cursor: CursorWrapper,
    definition: Definition,
    bounds: dict[str, str | None],
    modulus: int,
    percent: float | None,
) -> list[Share]:
    statement = definition.compose(
        RESIDUES_SQL, hash=definition.partition_hash(), sample=sample_clause(percent)
    )
    cursor.execute(statement, {**bounds, "modulus": modulus})
    counts = {int(residue): scaled(rows, percent) for residue, rows in cursor.fetchall()}
    after, high = bounds["after"], bounds["high"]
    assert high is not None
    return [Share(after, high, counts.get(r, 0), modulus, r) for r in range(modulus)]


def range_shares(
    cursor: CursorWrapper,
    definition: Definition,
    bounds: dict[str, str | None],
    parts: int,
    percent: float | None,
) -> list[Share]:
    """Ranges cut at the quantiles of the pending keys (bounds never repeat)."""
    fractions = [i / parts for i in range(1, parts)]
    statement = definition.compose(QUANTILES_SQL, sample=sample_clause(percent))
    cursor.execute(statement, {**bounds, "fractions": fractions})
    row = cursor.fetchone()
    rows, quantiles = (int(row[0]), row[1] or []) if row else (0, [])
    after, high = bounds["after"], bounds["high"]
    assert high is not None
    cuts: list[str] = []
    for key in quantiles:
        if key is not None and key != high and (not cuts or key != cuts[-1]):
            cuts.append(key)
    edges = [after, *cuts, high]
    each = scaled(rows, percent) // (len(edges) - 1)
    return [Share(edges[i], str(edges[i + 1]), each) for i in range(len(edges) - 1)]


def add_slices(
    job: Job,
    definition: Definition,
    after: str | None,
    high: str,
    total: PendingCount | None = None,
) -> int:
    """Slices for keys (after, high], numbered after the job's existing ones.

    Returns the pending rows they were made for (an estimate when `total`
    called for a sample).
    """
    first = Slice.objects.filter(job=job).count()
    made = shares(definition, after, high, job.concurrency, total)
    Slice.objects.bulk_create(
        Slice(
            job=job,
            number=first + i,
            after=share.after,
            high=share.high,
            cursor=share.after,
            rows_expected=share.rows,
            modulus=share.modulus,
            residue=share.residue,
            batch_size=job.batch_size,
        )
        for i, share in enumerate(made)
    )
    return sum(share.rows for share in made)


EXTENSION_SQL = "SELECT count(*) FROM {table} WHERE {in_range} AND ({pending})"


def extend_tail(job: Job, definition: Definition, high: str) -> int:
    """Cover keys (key_high, high] by extending the slices that end at the job's range.

    The last range (or every hash share) is reopened with its cursor at the
    old end, rather than new slices cut: an old app version inserting all
    through the job would otherwise add slices at every look. A worker that
    would idle splits it if the rows are many. Returns the rows counted.
    """
    tail = Slice.objects.filter(job=job, high=job.key_high)
    if job.key_high is None or not tail.exists():
        rows = add_slices(job, definition, job.key_high, high)
    else:
        with connection.cursor() as cursor:
            cursor.execute(definition.compose(EXTENSION_SQL), {"after": job.key_high, "high": high})
            row = cursor.fetchone()
        rows = int(row[0]) if row else 0
        each = rows // tail.count()
        # One UPDATE: the cursor takes the old end before the end moves. The new
        # keys are a first pass, which an idle worker may split.
        tail.reopen(cursor=F("high"), high=high, rows_expected=F("rows_expected") + each, passes=1)
    job.key_high = high
    job.rows_total += rows
    job.save(update_fields=["key_high", "rows_total", "updated_at"])
    return rows


# A slice is split for an idle worker only while it has at least this many
# batches of rows left; a hash share never finer than this modulus.
SPLIT_MIN_BATCHES = 10
MAX_MODULUS = 64

# Pending rows of the slice's share ahead of its cursor, counted up to a cap:
# enough to tell whether it is worth splitting, without reading all of it.
AHEAD_SQL = """
SELECT count(*) FROM (
    SELECT 1 FROM {table} WHERE {in_range} AND ({pending}) AND {share} LIMIT %(cap)s
) AS ahead
"""

MEDIAN_SQL = """
SELECT (percentile_disc(0.5) WITHIN GROUP (ORDER BY {key}))::text
FROM {table} WHERE {in_range} AND ({pending})
"""


def threshold(slc: Slice) -> int:
    return SPLIT_MIN_BATCHES * slc.batch_size


def rows_ahead(cursor: CursorWrapper, definition: Definition, slc: Slice, cap: int) -> int:
    """Rows the slice has yet to visit in this pass, up to `cap`; 0 past its first pass."""
    if slc.passes > 1 or slc.held_keys:
        return 0
    cursor.execute(
        definition.compose(AHEAD_SQL),
        {"after": slc.cursor, "high": slc.high, "cap": cap, **slc.share_parameters()},
    )
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def split_busiest(job: Job) -> Slice | None:
    """Split the open slice with the most rows ahead, for a worker that would idle.

    Slices are uneven: a hash share holds every row of its hottest partition
    value ("My Company" is a fifth of the table), and a range's rows may
    turn out to be where the quantiles did not see them. Of the slices with
    at least ten batches of rows ahead, the one expected to have the most
    (rows counted when it was made, less those done) is split. It is locked
    first, so the split lands between two of its batches, and the worker on
    it reads its smaller slice with its next batch.
    """
    if job.status != JobStatus.RUNNING:
        return None
    definition = get_definition(job.definition)
    candidates = Slice.objects.filter(job=job).open()
    if definition.partition_key is not None:
        candidates = candidates.filter(modulus__lt=MAX_MODULUS)
    with connection.cursor() as cursor:
        # Those with enough rows ahead (counted no further than that), the one
        # expected to have the most first.
        big = [
            s for s in candidates if rows_ahead(cursor, definition, s, threshold(s)) >= threshold(s)
        ]
        busiest = max(big, key=lambda s: s.rows_expected - s.rows_done, default=None)
        if busiest is None:
            return None
        slc = Slice.objects.select_for_update(no_key=True).get(pk=busiest.pk)
        if rows_ahead(cursor, definition, slc, threshold(slc)) < threshold(slc):
            return None
        if definition.partition_key is not None:
            return halve_share(slc)
        return halve_range(cursor, definition, slc)


def halve_share(slc: Slice) -> Slice:
    """The share keeps the hashes that are its residue modulo twice its modulus;
    a new slice at the same cursor takes the others."""
    half = max(0, slc.rows_expected - slc.rows_done) // 2
    sibling = Slice.objects.create(
        job_id=slc.job_id,
        number=Slice.objects.filter(job_id=slc.job_id).count(),
        after=slc.after,
        high=slc.high,
        cursor=slc.cursor,
        rows_expected=half,
        modulus=slc.modulus * 2,
        residue=slc.residue + slc.modulus,
        passes=slc.passes,
        rows_skipped=slc.rows_skipped,
        batch_size=slc.batch_size,
    )
    slc.modulus *= 2
    slc.rows_expected -= half
    slc.save(update_fields=["modulus", "rows_expected", "updated_at"])
    return sibling


def halve_range(cursor: CursorWrapper, definition: Definition, slc: Slice) -> Slice | None:
    """The range keeps its rows up to the median key ahead; a new slice takes the rest."""
    cursor.execute(definition.compose(MEDIAN_SQL), {"after": slc.cursor, "high": slc.high})
    row = cursor.fetchone()
    middle = row[0] if row else None
    if middle is None or middle == slc.high:
        return None
    half = max(0, slc.rows_expected - slc.rows_done) // 2
    sibling = Slice.objects.create(
        job_id=slc.job_id,
        number=Slice.objects.filter(job_id=slc.job_id).count(),
        after=middle,
        high=slc.high,
        cursor=middle,
        rows_expected=half,
        batch_size=slc.batch_size,
    )
    slc.high = middle
    slc.rows_expected -= half
    slc.save(update_fields=["high", "rows_expected", "updated_at"])
    return sibling
