"""A row another transaction holds for long is waited on by name, never rescanned for ever."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.db import connection, connections
from psycopg import sql

from backfill.engine import checker, held, local, service
from backfill.engine.options import JobOptions
from backfill.engine.progress import job_progress
from backfill.models import Job, JobStatus, Slice
from backfill.registry import get_definition
from organizations.models import Organization
from tests.data import app_session, seed
from tests.invariants import assert_sound
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def named(pid: int, seen: dict[str, Any]) -> bool:
    """What the dashboard, `status --json` and `backfill check` show once the row's holder
    is named, kept in `seen`; False while it is not."""
    waiting = Slice.objects.exclude(held=[]).first()
    if waiting is None or all(row["pid"] != pid for row in waiting.held):
        return False
    seen["held"] = waiting.held
    seen["status"] = job_progress(Job.objects.get(pk=waiting.job_id)).as_dict()
    seen["check"] = checker.check(get_definition("admin_groups")).summary()
    return True


def test_a_row_held_for_long_is_retried_alone_named_and_filled_once_released(run_sync, settings):
    settings.BACKFILL_HELD_ROW_PASSES = 2
    seed(2_000, share=0, existing_groups=20)
    key = Organization.objects.order_by("pk").values_list("pk", flat=True)[700]
    app = app_session()
    app.execute(
        "SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE /* monthly report */",
        [key],
    )
    pid = app.info.backend_pid
    seen: dict[str, Any] = {}

    def release_once_named() -> None:
        try:
            wait_for(lambda: named(pid, seen), timeout=60, interval=0.1)
            time.sleep(1.5)  # the slice keeps waiting, with back-off, not rescanning
            app.commit()
        finally:
            app.close()
            connections.close_all()

    releaser = threading.Thread(target=release_once_named)
    releaser.start()
    try:
        job = run_sync(batch_size=200)
    finally:
        releaser.join(90)
    assert seen, "the holder was never named"
    assert [(row["key"], row["pid"]) for row in seen["held"]] == [(str(key), pid)]
    assert "monthly report" in seen["held"][0]["query"]
    assert seen["status"]["held"][0]["pid"] == pid
    assert f"pid {pid}" in seen["check"]
    assert job.status == JobStatus.SUCCEEDED
    assert Organization.objects.get(pk=key).admin_id is not None
    (waited,) = [
        s
        for s in Slice.objects.filter(job=job)
        if (s.after is None or int(s.after) < key) and key <= int(s.high)
    ]
    assert waited.passes == 2  # no rescan of the range after the budget
    assert waited.held_keys == []
    assert_sound(job)


READER = "h_secfix_reader"  # a role without pg_read_all_stats, as a bare app role is


@contextmanager
def reader_session() -> Iterator[psycopg.Connection]:
    """A session of a NOSUPERUSER role that may read the table but not other roles'
    sessions; the role is the cluster's, so it is dropped after."""
    name = sql.Identifier(READER)
    with app_session(autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(name))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(name))
        admin.execute(sql.SQL("GRANT SELECT ON organizations_organization TO {}").format(name))
        try:
            db = connection.settings_dict
            with psycopg.connect(
                host=db["HOST"], port=db["PORT"], user=READER, dbname=db["NAME"], autocommit=True
            ) as reader:
                yield reader
        finally:
            admin.execute(sql.SQL("REVOKE ALL ON organizations_organization FROM {}").format(name))
            admin.execute(sql.SQL("DROP ROLE {}").format(name))


def test_a_holder_this_role_cannot_read_is_named_with_the_grant_it_needs():
    """Without pg_read_all_stats another role's session shows its pid (backend_xid is
    readable) but no state, start or query: the line says so, not "None"."""
    seed(50)
    key = Organization.objects.order_by("pk").values_list("pk", flat=True)[10]
    definition = get_definition("admin_groups")
    with app_session() as holder, reader_session() as reader:
        pid = holder.info.backend_pid
        holder.execute("SELECT 1 FROM organizations_organization WHERE id = %s FOR UPDATE", [key])
        with reader.cursor() as cursor:
            seen = held.holders(cursor, definition, [str(key)])  # type: ignore[arg-type]
        with connection.cursor() as cursor:
            named_by_superuser = held.holders(cursor, definition, [str(key)])
    assert [row["pid"] for row in seen] == [pid]
    line = held.describe(seen)
    assert (
        line
        == f"1 rows held by pid {pid} (its state and query unreadable: needs pg_read_all_stats)"
    )
    assert named_by_superuser[0]["pid"] == pid
    assert "FOR UPDATE" in held.describe(named_by_superuser)


def test_more_held_rows_than_a_slice_keeps_are_named_and_filled_once_released(
    local_queue, settings
):
    settings.BACKFILL_HELD_ROW_PASSES = 1
    seed(3_000, share=0, existing_groups=20)
    keys = list(Organization.objects.order_by("pk").values_list("pk", flat=True)[:1_500])
    app = app_session()
    app.execute(
        "SELECT 1 FROM organizations_organization WHERE id = ANY(%s) FOR UPDATE /* export */",
        [keys],
    )
    pid = app.info.backend_pid
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + 90

    def release_once_named(_: Job) -> None:
        assert time.monotonic() < deadline, "the holder of 1,500 rows was never named"
        if not seen and named(pid, seen):
            app.commit()

    job = service.start("admin_groups", "test", JobOptions.build(batch_size=500, concurrency=1))
    try:
        job = local.drive(job.pk, local_queue, "test-owner", 2, release_once_named)
    finally:
        app.close()
    assert len(seen["held"]) == held.MAX_HELD_KEYS
    assert {row["pid"] for row in seen["held"]} == {pid}
    assert seen["status"]["held"][0]["pid"] == pid
    assert f"pid {pid}" in seen["check"]
    assert "backfill start" not in seen["check"]  # a job is running: nothing to start
    assert job.status == JobStatus.SUCCEEDED
    assert not Organization.objects.filter(admin__isnull=True).exists()
    assert_sound(job)
