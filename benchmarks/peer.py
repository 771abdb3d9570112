"""P: the Django peer a user would compare with, at its defaults, on one table.

    DATABASE_URL=... DJANGO_SETTINGS_MODULE=examples.settings \\
        python -m benchmarks.peer examples_reading id "label = 'r' || value" "label IS NULL"

django-deferred-migrations' `run_batched_update`: key-range UPDATEs sized
to about 0.5 s (at most 10,000 rows), 50 ms apart, one process. It is
installed for the benchmarks only (`make bench-setup`), never a dependency
of the service; it says Python >= 3.12, but this module of it runs on 3.11.
The table, key and SQL come from the suite's own code, never from a user.
Prints one JSON line: rows, seconds, progress, the process's peak memory.
"""

import argparse
import json
import os
import time

from benchmarks.passes import peak_rss_mb

INSTALL = (
    "the peer is not installed: .venv/bin/pip install --no-deps --ignore-requires-python "
    "-r requirements-bench.txt (or make bench-setup)"
)


def available() -> bool:
    try:
        import deferred_migrations.backfill  # noqa: F401
    except ImportError:
        return False
    return True


def run(table: str, key: str, set_sql: str, where_sql: str) -> dict[str, object]:
    from deferred_migrations.backfill import run_batched_update
    from django.db import connection

    started = time.time()
    rows = run_batched_update(connection, table, key, set_sql, where_sql, "benchmark")
    return {"rows": rows, "progress": [(started, 0), (time.time(), rows)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table")
    parser.add_argument("key")
    parser.add_argument("set_sql")
    parser.add_argument("where_sql")
    options = parser.parse_args()
    if not available():
        raise SystemExit(INSTALL)
    import django

    django.setup()
    result = run(options.table, options.key, options.set_sql, options.where_sql)
    progress = result["progress"]
    assert isinstance(progress, list)
    result["seconds"] = round(progress[-1][0] - progress[0][0], 3)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.settings")
    main()
