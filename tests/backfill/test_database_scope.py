"""The service touches only its own database, and works as a role that is not a superuser.

pg_locks and pg_stat_activity list the whole cluster, and two databases made
from one template hold their tables under the same OIDs: a schema step must
neither wait for nor end a session of the other one. A role without
pg_read_all_stats sees other roles' sessions with no state or start: a
schema step still waits for them (or gives up in one line), and pacing names
the signals it cannot read instead of taking their silence for room.
"""

import io
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from psycopg import sql

from backfill.pacing import health, pacer
from backfill.pacing.controller import Signals
from backfill.schema.gaps import GapWaiter
from backfill.schema.holders import Holder
from backfill.schema.statements import Target

TABLE = "organizations_organization"
APP_ROLE = "h_secfix_app"  # the app's role, as docker-compose makes it: not a superuser
OTHER_ROLE = "h_secfix_other"  # another role's session: a report, a console
TWINS = ("h_secdb_tpl", "h_secdb_a", "h_secdb_b")


def server(dbname: str | None = None, user: str | None = None, autocommit: bool = True):
    """A session of its own on the shared server (the test database unless named)."""
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=user or db["USER"],
        dbname=dbname or db["NAME"],
        password=db.get("PASSWORD") or None,
        autocommit=autocommit,
    )


def drop_databases(admin: psycopg.Connection) -> None:
    for name in reversed(TWINS):
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def twins() -> Iterator[tuple[str, str]]:
    """Two databases made from one template: their table `t` has one OID in both."""
    template, here, twin = TWINS
    with server("postgres") as admin:
        drop_databases(admin)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
        with server(template) as conn:
            conn.execute("CREATE TABLE t (id int)")
        for name in (here, twin):
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
    yield here, twin
    with server("postgres") as admin:
        drop_databases(admin)


def oid_of_t(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT 't'::regclass::oid").fetchone()
    assert row is not None
    return int(row[0])


def test_a_lock_in_a_database_made_from_the_same_template_is_neither_waited_for_nor_ended(twins):
    here, twin = twins
    with server(twin, autocommit=False) as other, server(here) as ours:
        other.execute("SELECT count(*) FROM t")  # holds "our" table's OID, idle in transaction
        assert oid_of_t(ours) == oid_of_t(other)
        statement = "ALTER TABLE t ADD COLUMN y int"
        waiter = GapWaiter("default", wait_seconds=1, terminate_blockers=True)
        started = time.monotonic()
        with ours.cursor() as raw:
            waiter.run(
                raw,
                Target("AccessExclusiveLock", table="t"),
                lambda: raw.execute(statement),
                False,
                statement,
            )
        assert time.monotonic() - started < 1.0  # nothing here was in the way
        assert other.execute("SELECT count(*) FROM t").fetchone() == (0,)  # still alive
        assert ours.execute("SELECT count(y) FROM t").fetchone() == (0,)  # applied


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_expanded_state")
def test_ending_a_blocker_names_its_database_role_state_and_age(caplog):
    call_command("migrate", "organizations", "0002", verbosity=0)
    db, user = connection.settings_dict["NAME"], connection.settings_dict["USER"]
    holder = server(autocommit=False)  # ended by the command: closed, not committed
    try:
        holder.execute(f"SELECT count(*) FROM {TABLE}")
        pid = holder.info.backend_pid
        with caplog.at_level(logging.WARNING):
            expand_waiting(1, "--terminate-blockers")
    finally:
        holder.close()
    assert column_exists()
    ended = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ending")]
    assert len(ended) == 1
    assert re.match(
        rf"ending pid {pid} \(idle in transaction for [\d.]+ s, role {user}, database {db}, ",
        ended[0],
    )


@contextmanager
def as_app_role(*grants: str) -> Iterator[None]:
    """The test database's Django connection logs in as a role that is not a superuser
    and owns the table, as the app's role does in docker-compose; `grants` are
    predefined roles given to it. Everything is put back and the roles dropped after."""
    settings = connection.settings_dict
    superuser = settings["USER"]
    with server() as admin:
        drop_roles(admin, superuser)
        for role in (APP_ROLE, OTHER_ROLE):
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        app = sql.Identifier(APP_ROLE)
        for grant in grants:
            admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(grant), app))
        for what in (
            "SCHEMA public",
            "ALL TABLES IN SCHEMA public",
            "ALL SEQUENCES IN SCHEMA public",
        ):
            admin.execute(sql.SQL(f"GRANT ALL ON {what} TO {{}}").format(app))
        admin.execute(sql.SQL(f"ALTER TABLE {TABLE} OWNER TO {{}}").format(app))
        admin.execute(
            sql.SQL(f"GRANT SELECT ON {TABLE} TO {{}}").format(sql.Identifier(OTHER_ROLE))
        )
    connection.close()
    settings["USER"] = APP_ROLE
    try:
        yield
    finally:
        connection.close()
        settings["USER"] = superuser
        with server() as admin:
            drop_roles(admin, superuser)


def drop_roles(admin: psycopg.Connection, superuser: str) -> None:
    """Give back what the roles own, then drop them (roles are the cluster's, not the test's)."""
    for role in (APP_ROLE, OTHER_ROLE):
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            continue
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role]
        )
        name, owner = sql.Identifier(role), sql.Identifier(superuser)
        admin.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(name, owner))
        admin.execute(sql.SQL("DROP OWNED BY {}").format(name))
        admin.execute(sql.SQL("DROP ROLE {}").format(name))


def expand_waiting(seconds: int, *extra: str) -> None:
    call_command(
        "migrate_with_timeouts",
        *("organizations", "0003", "--lock-timeout-in-ms", "100"),
        *("--gap-wait-seconds", str(seconds), *extra),
        stdout=io.StringIO(),
    )


def column_exists() -> bool:
    with server() as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'admin_id'",
            [TABLE],
        ).fetchone()
    return row is not None


@contextmanager
def other_role_holding_the_table() -> Iterator[psycopg.Connection]:
    """Another role's transaction that read the table and stays open."""
    with server(user=OTHER_ROLE, autocommit=False) as holder:
        holder.execute(f"SELECT count(*) FROM {TABLE}")
        yield holder


UNREADABLE = r"pid {pid} \(role h_secfix_other, database {db}, seen holding AccessShareLock"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_expanded_state")
def test_a_role_that_cannot_read_the_blocker_waits_then_gives_up_in_one_line():
    call_command("migrate", "organizations", "0002", verbosity=0)
    db = connection.settings_dict["NAME"]
    with as_app_role(), other_role_holding_the_table() as holder:
        pid = holder.info.backend_pid
        with pytest.raises(CommandError) as raised:
            expand_waiting(1)
    message = str(raised.value)
    assert re.search(r"no gap in 1 s .*" + UNREADABLE.format(pid=pid, db=db), message)
    assert "needs pg_read_all_stats" in message
    assert "\n" not in message
    assert not column_exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_expanded_state")
def test_a_role_that_cannot_read_the_blocker_ends_nothing_when_asked_to():
    call_command("migrate", "organizations", "0002", verbosity=0)
    with as_app_role(), other_role_holding_the_table() as holder:
        pid = holder.info.backend_pid
        with pytest.raises(CommandError, match=rf"ended nothing: pid {pid} .*cannot be ended"):
            expand_waiting(1, "--terminate-blockers")
    assert not column_exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_expanded_state")
def test_a_role_without_pg_signal_backend_says_so_instead_of_ending():
    call_command("migrate", "organizations", "0002", verbosity=0)
    with as_app_role("pg_read_all_stats"), other_role_holding_the_table() as holder:
        pid = holder.info.backend_pid
        with pytest.raises(
            CommandError, match=rf"pid {pid} \(idle in transaction.*pg_signal_backend"
        ):
            expand_waiting(1, "--terminate-blockers")
    assert not column_exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_expanded_state")
def test_a_superuser_among_the_blockers_means_none_is_ended(caplog):
    """All or nothing, decided before ending any: the app's role, granted both, may end
    another role's session but never a superuser's."""
    call_command("migrate", "organizations", "0002", verbosity=0)
    superuser = connection.settings_dict["USER"]
    with (
        as_app_role("pg_read_all_stats", "pg_signal_backend"),
        other_role_holding_the_table() as other,
        server(user=superuser, autocommit=False) as root,
    ):
        root.execute(f"SELECT count(*) FROM {TABLE}")
        pid = root.info.backend_pid
        with caplog.at_level(logging.WARNING), pytest.raises(CommandError) as raised:
            expand_waiting(1, "--terminate-blockers")
        assert other.execute("SELECT 1").fetchone() == (1,)  # still alive
        assert root.execute("SELECT 1").fetchone() == (1,)
    message = str(raised.value)
    assert re.search(rf"ended nothing: pid {pid} \(.*superuser's session", message)
    assert "pg_signal_backend" not in message
    assert not [r for r in caplog.records if r.getMessage().startswith("ending")]
    assert not column_exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_expanded_state")
def test_a_role_that_cannot_read_the_blocker_applies_once_it_leaves():
    call_command("migrate", "organizations", "0002", verbosity=0)
    with as_app_role(), other_role_holding_the_table() as holder:
        leaving = threading.Timer(3.0, holder.commit)
        leaving.start()
        started = time.monotonic()
        expand_waiting(30)
        took = time.monotonic() - started
        leaving.join()
    assert column_exists()
    assert took >= 2.5  # it waited for the holder rather than queueing


@pytest.mark.django_db(transaction=True)
def test_pacing_as_a_role_without_pg_read_all_stats_names_the_transaction_age_unreadable():
    with server(autocommit=False) as old:  # the superuser's transaction: another role's
        old.execute("SELECT txid_current()")
        time.sleep(1.0)
        seen_by_superuser = health.read(TABLE, latency_ms=1.0)
        with as_app_role():
            seen_by_app = health.read(TABLE, latency_ms=1.0)
        with as_app_role("pg_read_all_stats"):
            seen_with_grant = health.read(TABLE, latency_ms=1.0)
    assert seen_by_superuser.unreadable == ()
    assert (seen_by_superuser.transaction_age_seconds or 0) >= 1.0
    assert seen_by_app.transaction_age_seconds is None  # hidden, not absent...
    assert seen_by_app.unreadable == ("transaction_age",)  # ...and said so
    assert seen_with_grant.unreadable == ()
    assert (seen_with_grant.transaction_age_seconds or 0) >= 1.0


def test_pacing_says_once_which_signals_it_cannot_read(caplog, monkeypatch):
    monkeypatch.setattr(pacer, "_unreadable_reported", set())
    signals = Signals(unreadable=("transaction_age",))
    with caplog.at_level(logging.WARNING, logger=pacer.__name__):
        pacer.report_unreadable(7, signals)
        pacer.report_unreadable(7, signals)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "job 7: cannot read transaction_age: needs pg_read_all_stats (docs/runbook.md); "
        "pacing goes by the signals it can read"
    ]


def test_a_prepared_transaction_is_named_by_its_gid():
    holder = Holder(None, "-1/812", "app", "AccessShareLock", "app", "", "", 42.0, "", "deploy-7")
    assert holder.prepared
    assert holder.readable
    assert not holder.terminable
    assert holder.in_the_way(100)
    assert "prepared transaction 'deploy-7'" in holder.describe()
    assert "ROLLBACK PREPARED" in holder.describe()


def test_the_compose_init_script_grants_what_the_runbook_names(tmp_path):
    """The script as the postgres image runs it, under names of its own on this server."""
    script = (Path(__file__).resolve().parents[2] / "scripts" / "compose-db-init.sh").read_text()
    assert "backfill" in script
    renamed = tmp_path / "init.sh"
    renamed.write_text(script.replace("backfill", COMPOSE_ROLE))
    db = connection.settings_dict
    env = {**os.environ, "PGHOST": db["HOST"], "PGPORT": str(db["PORT"]), "APP_DB_PASSWORD": "x"}
    with server("postgres") as admin:
        drop_compose_role(admin)
        try:
            subprocess.run(["sh", str(renamed)], env=env, check=True, capture_output=True)
            granted = admin.execute(
                "SELECT array_agg(g.rolname::text ORDER BY g.rolname) FROM pg_auth_members m "
                "JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member "
                "WHERE r.rolname = %s",
                [COMPOSE_ROLE],
            ).fetchone()[0]
            superuser = admin.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = %s", [COMPOSE_ROLE]
            ).fetchone()[0]
        finally:
            drop_compose_role(admin)
    assert granted == ["pg_read_all_stats", "pg_signal_backend"]
    assert superuser is False


COMPOSE_ROLE = "h_secdb_compose"


def drop_compose_role(admin: psycopg.Connection) -> None:
    name = sql.Identifier(COMPOSE_ROLE)
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(name))
