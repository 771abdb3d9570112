"""A row another transaction holds for long is waited on by name, never rescanned for ever."""

import threading
import time
from typing import Any

import pytest
from django.db import connections

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
