"""Schema steps wait for a gap: a long transaction on the table delays them, never the app.

A session holds ACCESS SHARE on the table for 15 s (a report, a pg_dump, an
idle transaction) while an app reads single rows every 20 ms. A DDL
statement that queued for its lock would stall every read behind it for as
long as it waited; here the statements wait beside the queue instead.
"""

import io
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from backfill.schema.statements import Target, target_of
from tests.data import app_session, seed

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("back_to_expanded_state"),
]

TABLE = "organizations_organization"
HOLD_SECONDS = 15.0
STALL_LIMIT_MS = 150.0


class Reader:
    """The app: one single-row read every 20 ms on a connection of its own; each one timed."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.stop = threading.Event()
        self.durations: list[float] = []
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with app_session(autocommit=True) as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                conn.execute(f"SELECT name FROM {TABLE} WHERE id = %s", [self.key])
                self.durations.append((time.perf_counter() - started) * 1000)
                time.sleep(0.02)

    def __enter__(self) -> "Reader":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def report(self, what: str) -> float:
        ordered = sorted(self.durations)
        longest = ordered[-1]
        print(
            f"{what}: {len(ordered)} reads, p50 {ordered[len(ordered) // 2]:.2f} ms, "
            f"longest {longest:.2f} ms"
        )
        return longest


def hold_table(seconds: float) -> threading.Thread:
    """A transaction that read the table and stays open for `seconds`."""
    ready = threading.Event()

    def hold() -> None:
        with app_session() as holder:
            holder.execute(f"SELECT count(*) FROM {TABLE}")
            ready.set()
            time.sleep(seconds)
            holder.commit()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(10)
    return thread


def column_is_not_null(column: str) -> bool | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
            [TABLE, column],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def run_behind_a_long_transaction(*command: str) -> tuple[float, float]:
    """Seconds the command took and the longest app read meanwhile."""
    key = connection.cursor().execute(f"SELECT min(id) FROM {TABLE}").fetchone()[0]
    with Reader(key) as reader:
        time.sleep(0.5)
        holder = hold_table(HOLD_SECONDS)
        started = time.monotonic()
        call_command(*command, verbosity=0, stdout=io.StringIO())
        took = time.monotonic() - started
        holder.join()
        time.sleep(0.5)
    return took, reader.report(" ".join(command))


def test_the_contract_waits_for_the_long_transaction_without_stalling_reads():
    seed(2_000)
    call_command("backfill", "run", "admin_groups", "--sync", stdout=io.StringIO())
    took, longest = run_behind_a_long_transaction("migrate", "organizations", "0006")
    assert column_is_not_null("admin_id")
    assert took >= HOLD_SECONDS - 1  # it waited for the holder...
    assert longest < STALL_LIMIT_MS  # ...and no read waited behind it


def test_the_expand_waits_for_the_long_transaction_without_stalling_reads():
    call_command("migrate", "organizations", "0002", verbosity=0)
    seed(2_000)
    took, longest = run_behind_a_long_transaction(
        "migrate_with_timeouts", "organizations", "0003", "--lock-timeout-in-ms", "2000"
    )
    assert column_is_not_null("admin_id") is False  # the column is there, nullable
    assert took >= HOLD_SECONDS - 1
    assert longest < STALL_LIMIT_MS


def expand_waiting_one_second(*extra: str) -> None:
    call_command(
        "migrate_with_timeouts",
        *("organizations", "0003", "--lock-timeout-in-ms", "100", "--gap-wait-seconds", "1"),
        *extra,
        stdout=io.StringIO(),
    )


def test_giving_up_names_the_blocking_session_and_changes_nothing():
    call_command("migrate", "organizations", "0002", verbosity=0)
    with app_session() as holder:
        holder.execute(f"SELECT count(*) FROM {TABLE}")
        pid = holder.info.backend_pid
        with pytest.raises(CommandError, match=rf"no gap in 1 s .*pid {pid} \(idle in transaction"):
            expand_waiting_one_second()
    assert column_is_not_null("admin_id") is None


def test_terminate_blockers_ends_the_session_in_the_way_and_applies():
    call_command("migrate", "organizations", "0002", verbosity=0)
    holder = app_session()
    holder.execute(f"SELECT count(*) FROM {TABLE}")
    expand_waiting_one_second("--terminate-blockers")
    assert column_is_not_null("admin_id") is False
    assert holder.closed or holder.broken or holder_is_gone(holder)


def holder_is_gone(holder) -> bool:
    try:
        holder.execute("SELECT 1")
    except Exception:
        return True
    return False


@pytest.mark.parametrize(
    ("statement", "target"),
    [
        (
            'ALTER TABLE "t" ADD CONSTRAINT "c" CHECK ("x" IS NOT NULL) NOT VALID',
            Target("AccessExclusiveLock", table='"t"'),
        ),
        ('ALTER TABLE "t" VALIDATE CONSTRAINT "c"', None),
        (
            'ALTER TABLE "t" ADD CONSTRAINT "f" FOREIGN KEY ("g") REFERENCES "auth_group" ("id") NOT VALID',
            Target("ShareRowExclusiveLock", table='"t"'),
        ),
        ('CREATE INDEX CONCURRENTLY IF NOT EXISTS "i" ON "t" ("id")', None),
        ('CREATE INDEX IF NOT EXISTS "i" ON ONLY "t" ("id")', Target("ShareLock", table='"t"')),
        (
            'CREATE OR REPLACE TRIGGER "g" BEFORE UPDATE OF "x" ON "t" FOR EACH ROW EXECUTE FUNCTION f()',
            Target("ShareRowExclusiveLock", table='"t"'),
        ),
        ('DROP TRIGGER IF EXISTS "g" ON "t"', Target("AccessExclusiveLock", table='"t"')),
        ('DROP INDEX IF EXISTS "i"', Target("AccessExclusiveLock", index='"i"')),
        ('DROP INDEX CONCURRENTLY IF EXISTS "i"', None),
        ('ALTER INDEX "p" ATTACH PARTITION "c"', Target("AccessExclusiveLock", index='"c"')),
        ("CREATE OR REPLACE FUNCTION f() RETURNS trigger AS $$ BEGIN END $$", None),
        ("SELECT 1", None),
    ],
)
def test_which_statements_wait_for_a_gap(statement, target):
    assert target_of(statement) == target
