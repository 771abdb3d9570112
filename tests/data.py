"""Test data and sessions of "the app": one helper each, shared by every test."""

import threading

import psycopg
from django.core.management import call_command
from django.db import connection

# A table real workers take long enough over to be paused, killed and faulted mid-job.
WORKER_ROWS = 50_000


def seed(
    count: int,
    share: float | None = None,
    existing_groups: int | None = None,
    hot_share: float | None = None,
) -> None:
    """Legacy organizations (no admin group) through the project's own seed command;
    an option left out takes the command's default (a tenth of the names shared, no
    group already holding an admin name, no hot name)."""
    args = ["--count", str(count)]
    if hot_share is not None:
        args += ["--hot-share", str(hot_share)]
    if share is not None:
        args += ["--duplicate-share", str(share)]
    if existing_groups is not None:
        args += ["--existing-groups", str(existing_groups)]
    call_command("seed_organizations", *args, verbosity=0)


def app_session(autocommit: bool = False) -> psycopg.Connection:
    """A raw session on the test database, as another app server's would be."""
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        dbname=db["NAME"],
        password=db.get("PASSWORD") or None,
        autocommit=autocommit,
    )


class OldAppVersion:
    """An app server still on the code before the expand step, during a rolling deploy:
    it inserts rows without the new value (raw SQL, `per_second` a second, on a
    session of its own) until the block ends. `statement` gets the row's number as %(n)s."""

    def __init__(self, statement: str, per_second: float = 20.0) -> None:
        self.statement = statement
        self.per_second = per_second
        self.inserted = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> "OldAppVersion":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def run(self) -> None:
        with app_session(autocommit=True) as session:
            while not self.stopping.wait(1 / self.per_second):
                session.execute(self.statement, {"n": self.inserted})
                self.inserted += 1
