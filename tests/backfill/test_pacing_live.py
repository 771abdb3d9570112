"""Pacing against a real database's health: a standby that stops replaying, an old transaction.

A private primary with a streaming standby (tests/standby.py); real Celery
workers and beat pointed at the primary; every step through `manage.py`.
"""

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests import standby
from tests.processes import Beat, manage, wait_for

pytestmark = [
    pytest.mark.workers,
    pytest.mark.slow,
    pytest.mark.skipif(not standby.available(), reason="needs root and PostgreSQL's binaries"),
]

ROWS = 60_000
DATABASE = "backfill_paced"


@pytest.fixture(scope="module")
def cluster() -> Iterator[standby.PrimaryAndStandby]:
    pair = standby.PrimaryAndStandby()
    try:
        pair.start()
        with pair.primary.connect() as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        for target in ((), ("organizations", "0005")):  # between expand and contract
            migrated = manage("migrate", "-v0", *target, DATABASE_URL=pair.primary.url(DATABASE))
            assert migrated.returncode == 0, migrated.stderr
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def primary(
    cluster: standby.PrimaryAndStandby, start_worker, output_dir
) -> Iterator[dict[str, str]]:
    """Fresh organizations on the primary, two workers and beat working on it."""
    env = {"DATABASE_URL": cluster.primary.url(DATABASE)}
    for step in (("flush", "--no-input"), ("seed_organizations", "--count", str(ROWS))):
        result = manage(*step, DATABASE_URL=env["DATABASE_URL"])
        assert result.returncode == 0, result.stderr
    start_worker(extra_env=env)
    start_worker(extra_env=env)
    beat = Beat(log_path=output_dir / "beat.log", extra_env=env)
    beat.start()
    yield env
    beat.stop()


def job_state(conn: psycopg.Connection) -> dict[str, Any]:
    row = conn.execute(
        "SELECT j.status, j.pace_limit, j.throttled_seconds, "
        "(SELECT coalesce(sum(rows_done), 0) FROM backfill_slice s WHERE s.job_id = j.id) "
        "FROM backfill_job j ORDER BY j.id DESC LIMIT 1"
    ).fetchone()
    assert row is not None
    return dict(zip(("status", "limit", "throttled", "rows_done"), row, strict=True))


def ended_state(conn: psycopg.Connection) -> dict[str, Any] | None:
    """The job's state once it succeeded or failed; None while it runs."""
    state = job_state(conn)
    return state if state["status"] in {"succeeded", "failed"} else None


def assert_stopped(conn: psycopg.Connection, limit: str) -> int:
    """Limited by `limit` within a few seconds, and then no row filled for four more."""
    wait_for(lambda: job_state(conn)["limit"] == limit, timeout=30)
    time.sleep(3)  # the batches in flight, and each worker's next reading
    stopped = job_state(conn)
    time.sleep(4)
    later = job_state(conn)
    assert later["status"] == "running"
    assert later["limit"] == limit
    assert later["rows_done"] == stopped["rows_done"] < ROWS
    return int(stopped["rows_done"])


def assert_all_filled(conn: psycopg.Connection) -> None:
    state = wait_for(lambda: ended_state(conn), timeout=120)
    assert state["status"] == "succeeded"
    assert state["rows_done"] == ROWS
    assert state["throttled"] > 3  # the seconds it stood still were counted
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE admin_id IS NULL), count(DISTINCT admin_id) "
        "FROM organizations_organization"
    ).fetchone()
    assert counts == (0, ROWS)


def test_a_standby_that_stops_replaying_stops_the_job_until_it_catches_up(cluster, primary):
    with cluster.standby.connect() as replica, cluster.primary.connect(DATABASE) as conn:
        replica.execute("SELECT pg_wal_replay_pause()")
        started = manage(
            "backfill", "start", "admin_groups", "--pace", "auto", "--max-replica-lag", "1s",
            "--max-latency-ratio", "0", "--pause-ms", "50", **primary,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert_stopped(conn, "replica_lag")
        status = manage("backfill", "status", "admin_groups", "--json", **primary)
        pace = json.loads(status.stdout)["pace"]
        assert (pace["limit"], pace["pause_ms"]) == ("replica_lag", 5000)
        lag_bytes = conn.execute(
            "SELECT max(pg_current_wal_lsn() - replay_lsn) FROM pg_stat_replication"
        ).fetchone()
        assert lag_bytes is not None
        assert lag_bytes[0] > 0

        replica.execute("SELECT pg_wal_replay_resume()")
        assert_all_filled(conn)
    with cluster.standby.connect(DATABASE) as replica:
        wait_for(
            lambda: replica.execute(
                "SELECT count(*) = 0 FROM organizations_organization WHERE admin_id IS NULL"
            ).fetchone()[0],
            timeout=30,
        )


def test_a_transaction_older_than_its_budget_stops_the_job_until_it_ends(cluster, primary):
    with cluster.primary.connect(DATABASE) as conn, cluster.primary.connect(DATABASE) as app:
        app.execute("BEGIN")
        app.execute("SELECT txid_current()")  # holds back vacuum from now on
        started = manage(
            "backfill", "start", "admin_groups", "--pace", "auto", "--max-transaction-age", "2",
            "--max-latency-ratio", "0", "--pause-ms", "50", **primary,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert_stopped(conn, "transaction_age")
        app.execute("COMMIT")
        assert_all_filled(conn)


def test_pace_off_ignores_the_signals(cluster, primary):
    with cluster.standby.connect() as replica, cluster.primary.connect(DATABASE) as conn:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            started = manage(
                "backfill", "start", "admin_groups", "--pace", "off", "--max-replica-lag", "1s",
                **primary,
            )  # fmt: skip
            assert started.returncode == 0, started.stderr
            state = wait_for(lambda: ended_state(conn), timeout=120)
            assert (state["status"], state["limit"], state["throttled"]) == ("succeeded", "", 0)
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
