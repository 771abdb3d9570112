"""A row another transaction holds for long is waited on by name, never rescanned for ever."""

import threading
import time
from typing import Any

import pytest
from django.db import connections

from backfill.engine import checker
from backfill.engine.progress import job_progress
from backfill.models import Job, JobStatus, Slice
from backfill.registry import get_definition
from organizations.models import Organization
from tests.data import app_session
from tests.invariants import assert_sound

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until_named(pid: int, seen: dict[str, Any], timeout: float = 60.0) -> None:
    """What the dashboard, `status --json` and `backfill check` show while the row is held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = Slice.objects.exclude(held=[]).first()
        if waiting is not None and any(row["pid"] == pid for row in waiting.held):
            seen["held"] = waiting.held
            seen["status"] = job_progress(Job.objects.get(pk=waiting.job_id)).as_dict()
            seen["check"] = checker.check(get_definition("admin_groups")).summary()
            return
        time.sleep(0.1)


def test_a_row_held_for_long_is_retried_alone_named_and_filled_once_released(
    seed, run_sync, settings
):
    settings.BACKFILL_HELD_ROW_PASSES = 2
    seed(2_000, share=0)
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
            wait_until_named(pid, seen)
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
