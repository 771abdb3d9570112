"""What each part of an expression's batch costs, in plain SQL, against one UPDATE.

    .venv/bin/python -m benchmarks.batch_parts --rows 1000000 --size 100000 --rounds 3

On the cost benchmark's cheap table (`'r' || value` into every row of
`examples_reading`), each variant fills a fresh copy in one process, batch
after batch of `size` rows in key order, and the variants alternate round
after round. Each variant takes one part away from the batch the workers run
(docs/engine.md, "writing first"), so the differences are the parts' costs,
with no worker, lease, sample or Python of the service around them:

- batch: where the range ends (the `size`th pending key), then one UPDATE
  of the range with the write log built from RETURNING, as a worker does;
- no log: the same without the log;
- no RETURNING: the range's end, then a bare UPDATE of the range;
- key arithmetic: a bare UPDATE of (cursor, cursor + size], no range end
  (only possible on dense integer keys: the floor of any batched pass);
- log without keys: the batch with a log of the values alone (the most a
  log of the range and its values in key order could save);
- ..., two sessions: the same batches, each of two sessions walking its own
  half of the keys at once (the floor of S2);
- B: one UPDATE of the whole table.

Every batch runs as the workers' do: `synchronous_commit`, `jit` and sorting
off; but in a plain transaction, where a worker's writing-first UPDATE runs
in a savepoint, and over one or two shares of the keys, where a job has
eight slices. Each variant's time includes connecting (milliseconds). The figure a variant prints is B's time over its own, round by round
(the median of the rounds): its speed as a share of B's.
"""

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg

from backfill.management.arguments import positive_int
from benchmarks import tables
from benchmarks.databases import copy_of, drop, url

TABLE = "examples_reading"
# The writing-first batch of backfill/engine/expression_fill.py, written out
# for this one table. The range end is aliased: ORDER BY id after SELECT id::text
# would sort the text.
AFTER = "(%(after)s::bigint IS NULL OR id > %(after)s::bigint)"
RANGE_END = (
    f"SELECT id::text AS range_end FROM {TABLE} "
    f"WHERE {AFTER} AND id <= %(stop)s::bigint AND label IS NULL "
    "ORDER BY id OFFSET %(size)s - 1 LIMIT 1"
)
RANGE = f"{AFTER} AND id <= %(high)s::bigint AND label IS NULL"
UPDATE = f"UPDATE {TABLE} SET label = 'r' || value WHERE {RANGE}"
RETURNING = f" RETURNING {TABLE}.id AS k, {TABLE}.label AS v"
LOG = """, logged AS (
    INSERT INTO parts_log (job_id, slice_number, keys, "values")
    SELECT 1, 1, array_agg(k::text), array_agg(v::text) FROM filled
    WHERE v IS NOT NULL HAVING count(*) > 0
)"""
WITH_LOG = f"WITH filled AS ({UPDATE}{RETURNING}){LOG} SELECT count(*) FROM filled"
WITHOUT_LOG = f"WITH filled AS ({UPDATE}{RETURNING}) SELECT count(*) FROM filled"
# The log without its keys: what a log of the range and the values in key
# order (possible when a batch filled every key of a dense integer range)
# could save at most.
VALUES_ONLY_LOG = """, logged AS (
    INSERT INTO parts_log (job_id, slice_number, "values")
    SELECT 1, 1, array_agg(v::text) FROM filled
    WHERE v IS NOT NULL HAVING count(*) > 0
)"""
WITH_VALUES_ONLY = (
    f"WITH filled AS ({UPDATE}{RETURNING}){VALUES_ONLY_LOG} SELECT count(*) FROM filled"
)
# The write log's table as migrations 0005 and 0013 leave it, without the job's key.
LOG_TABLE = (
    'CREATE TABLE parts_log (job_id int, slice_number int, keys text[], "values" text[]); '
    'ALTER TABLE parts_log ALTER keys SET STORAGE EXTERNAL, ALTER "values" SET STORAGE EXTERNAL'
)
BATCH_SETTINGS = (
    "SET LOCAL synchronous_commit = off; SET LOCAL jit = off; SET LOCAL enable_sort = off"
)

Variant = Callable[[str, int, int], None]


def batched(statement: str | None, sessions: int = 1) -> Variant:
    """Batches that read where their range ends, then run `statement` over it
    (a bare UPDATE when None: the range is the cursor plus `size`); with more
    than one session, each walks its own equal share of the keys at once, as
    workers on slices do."""

    def run(conninfo: str, rows: int, size: int) -> None:
        bounds = [rows * part // sessions for part in range(sessions + 1)]
        shares = list(itertools.pairwise(bounds))
        with ThreadPoolExecutor(sessions) as pool:
            # list(): a session's error is raised here, not lost.
            list(pool.map(lambda share: walk(conninfo, share[0], share[1], size), shares))

    def walk(conninfo: str, first: int, stop: int, size: int) -> None:
        after = str(first) if first else None
        with psycopg.connect(conninfo, cursor_factory=psycopg.ClientCursor) as conn:
            while True:
                with conn.transaction():
                    conn.execute(BATCH_SETTINGS)
                    if statement is None:
                        high = str(min(int(after or 0) + size, stop))
                        more = int(high) < stop
                        conn.execute(UPDATE, {"after": after, "high": high})
                    else:
                        params = {"after": after, "size": size, "stop": stop}
                        row = conn.execute(RANGE_END, params).fetchone()
                        # A share whose last range ends on its last key is done too.
                        high = row[0] if row else str(stop)
                        more = int(high) < stop
                        conn.execute(statement, {"after": after, "high": high})
                if not more:
                    return
                after = high

    return run


def one_update(conninfo: str, rows: int, size: int) -> None:
    # As the suite's B: the server's settings, one transaction.
    with psycopg.connect(conninfo) as conn:
        conn.execute(f"UPDATE {TABLE} SET label = 'r' || value WHERE label IS NULL")


VARIANTS: dict[str, Variant] = {
    "B": one_update,
    "batch": batched(WITH_LOG),
    "no log": batched(WITHOUT_LOG),
    "no RETURNING": batched(UPDATE),
    "key arithmetic": batched(None),
    "log without keys": batched(WITH_VALUES_ONLY),
    "batch, two sessions": batched(WITH_LOG, sessions=2),
    "no log, two sessions": batched(WITHOUT_LOG, sessions=2),
    "no RETURNING, two sessions": batched(UPDATE, sessions=2),
    "key arithmetic, two sessions": batched(None, sessions=2),
}


def timed(template: str, variant: Variant, rows: int, size: int) -> float:
    db = copy_of(template, f"{template}_parts")
    try:
        # Client-side binding, as Django's: a prepared generic plan would not
        # fold the null test of the first batch's cursor.
        with psycopg.connect(url(db), cursor_factory=psycopg.ClientCursor) as conn:
            conn.execute(LOG_TABLE)
            conn.execute("CHECKPOINT")
            conn.commit()
            started = time.perf_counter()
            variant(url(db), rows, size)
            seconds = time.perf_counter() - started
            (left,) = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE label IS NULL").fetchone()  # type: ignore[misc]
        if left:
            raise RuntimeError(f"{left:,} rows left pending")
        return seconds
    finally:
        drop(db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive_int, default=1_000_000)
    parser.add_argument("--size", type=positive_int, default=100_000, help="rows a batch")
    parser.add_argument("--rounds", type=positive_int, default=3)
    options = parser.parse_args()
    template = tables.seed(tables.CHEAP, options.rows)
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        for round_number in range(options.rounds):
            for name, variant in VARIANTS.items():
                seconds[name].append(timed(template, variant, options.rows, options.size))
                print(f"round {round_number + 1}, {name}: {seconds[name][-1]:.2f} s", flush=True)
    finally:
        drop(template)
    print(f"\n| variant ({options.rows:,} rows, {options.size:,} a batch) | seconds | vs B |")
    print("|---|---|---|")
    for name, times in seconds.items():
        ratios = [b / t for b, t in zip(seconds["B"], times, strict=True)]
        print(
            f"| {name} | {' '.join(f'{t:.2f}' for t in times)} | {statistics.median(ratios):.2f}x |"
        )


if __name__ == "__main__":
    main()
