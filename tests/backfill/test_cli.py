"""`manage.py backfill` as a script sees it: exit codes, one-line errors, nothing changed."""

import json

import pytest

from backfill.engine import service
from backfill.engine.options import JobOptions
from backfill.models import Job
from tests.data import seed
from tests.processes import manage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["start", "no_such_thing"], "unknown backfill 'no_such_thing'"),
        (["start", "admin_groups", "--batch-size", "abc"], "must be an integer"),
        (["start", "admin_groups", "--batch-size", "-5"], "must be a positive integer"),
        (["start", "admin_groups", "--batch-size", "10000000"], "batch size must be between"),
        (["start", "admin_groups", "--concurrency", "0"], "must be a positive integer"),
        (["start", "admin_groups", "--pause-ms", "-1"], "must be zero or a positive integer"),
        (["resume", "admin_groups"], "has never run"),
        (["pause", "admin_groups"], "has never run"),
        (["status", "--watch"], "needs a backfill name"),
        (["frobnicate"], "invalid choice"),
        (["start", "admin_groups", "--pace", "sometimes"], "invalid choice: 'sometimes'"),
        (["start", "admin_groups", "--max-replica-lag", "soon"], "must be a number"),
        (["start", "admin_groups", "--max-replica-lag=-1s"], "must be zero or a positive"),
        (["start", "admin_groups", "--max-latency-ratio", "nan"], "must be zero or a positive"),
        (["start", "admin_groups", "--max-latency-ratio", "1.05"], "must be between 1.1 and 100"),
        (["start", "admin_groups", "--max-transaction-age", "0.5"], "must be between 1 and 86400"),
    ],
)
def test_bad_usage_exits_2_with_one_line_and_changes_nothing(args, message):
    result = manage("backfill", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert not Job.objects.exists()


def test_run_sync_check_and_status_json():
    seed(3_000)
    assert manage("backfill", "check", "admin_groups").returncode == 1
    result = manage("backfill", "run", "admin_groups", "--sync", "--batch-size", "500")
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout.splitlines()[-1]

    check = manage("backfill", "check", "admin_groups")
    assert check.returncode == 0
    assert "nothing left to fill" in check.stdout

    status = json.loads(manage("backfill", "status", "admin_groups", "--json").stdout)
    assert status["status"] == "succeeded"
    assert status["rows_done"] == status["rows_total"] == 3_000
    assert {"name", "rows_per_second", "eta_seconds", "slices"} <= status.keys()
    # A finished job reports its average speed, and no ETA.
    assert status["rows_per_second"] > 0
    assert status["eta_seconds"] is None

    again = manage("backfill", "resume", "admin_groups")
    assert again.returncode == 2
    assert "succeeded, not paused" in again.stderr


def test_a_second_start_is_refused_with_exit_2():
    seed(500)
    first = manage("backfill", "start", "admin_groups")
    assert first.returncode == 0, first.stderr
    second = manage("backfill", "start", "admin_groups")
    assert second.returncode == 2
    assert "already has an active job" in second.stderr
    assert Job.objects.count() == 1


def test_check_reports_the_remaining_count_and_the_command_to_run():
    seed(1_234)
    result = manage("backfill", "check", "admin_groups")
    assert result.returncode == 1
    assert "1,234 rows of organizations.Organization.admin are still empty" in result.stdout
    assert "manage.py backfill start admin_groups" in result.stdout


def test_revert_without_confirmation_changes_nothing():
    seed(300)
    assert manage("backfill", "run", "admin_groups", "--sync").returncode == 0
    result = manage("backfill", "revert", "admin_groups")
    assert result.returncode == 2
    assert "not confirmed" in result.stderr
    assert manage("backfill", "check", "admin_groups").returncode == 0
    reverted = manage("backfill", "revert", "admin_groups", "--yes", "--sync")
    assert reverted.returncode == 0, reverted.stderr
    assert "reverted" in reverted.stdout.splitlines()[-1]
    assert manage("backfill", "check", "admin_groups").returncode == 1


def test_watching_a_paused_job_exits_3_not_0(local_queue):
    seed(300)
    service.start("admin_groups", "test", JobOptions.build(batch_size=100))
    service.pause("admin_groups", "test")
    result = manage("backfill", "status", "admin_groups", "--watch")
    assert result.returncode == 3, result.stderr
    assert "paused" in result.stderr
