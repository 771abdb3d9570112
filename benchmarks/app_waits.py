"""Where the app load's statements spend their time, sampled from pg_stat_activity.

    .venv/bin/python -m benchmarks.app_waits --db backfill_bench_s2 --seconds 20

Run it beside the suite while a run is under way (each run's copy is named
`backfill_bench_<run>`: ref, a, b, s1, s2, s2p). Every 2 ms it notes what
each active statement of the app load is doing: on the CPU, or waiting (for a
WAL flush, a lock, a data file read...). Compare a run with `ref`: the counts
are proportional to time spent, so a wait that doubles is a wait the backfill
added.
"""

import argparse
import time
from collections import Counter

import psycopg

from benchmarks.app_load import APPLICATION_NAME
from benchmarks.databases import url

SAMPLE_SECONDS = 0.002
QUERY = (
    "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '') "
    "FROM pg_stat_activity WHERE application_name = %s AND state = 'active'"
)


def sample(db: str, seconds: float) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    with psycopg.connect(url(db), autocommit=True, application_name="app-waits") as conn:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            counts.update(conn.execute(QUERY, [APPLICATION_NAME]).fetchall())
            time.sleep(SAMPLE_SECONDS)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    options = parser.parse_args()
    counts = sample(options.db, options.seconds)
    total = sum(counts.values()) or 1
    for (kind, event), n in counts.most_common():
        print(f"{n:6d} {n / total:6.1%}  {kind} {event}")


if __name__ == "__main__":
    main()
