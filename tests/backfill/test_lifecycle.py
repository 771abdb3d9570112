"""The lifecycle table is the only judge: CLI, dashboard, API and workers agree with it."""

import io
import re
import threading
from collections.abc import Sequence

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.backends.utils import CursorWrapper

from backfill.engine import service
from backfill.engine.lifecycle import PEOPLE_ACTIONS, Action, actions_for, transition
from backfill.engine.options import JobOptions
from backfill.models import Job, JobStatus, Slice
from backfill.registry import Row
from organizations.backfills import AdminGroups
from organizations.models import Organization
from tests.data import seed

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "test_paused_then_failing_admin_groups"
FAULT = {"armed": False}


class PausedThenFailingAdminGroups(AdminGroups):
    """admin_groups, except that while armed an operator pauses the job mid-batch
    (from another connection, as the dashboard would) and the batch then fails."""

    name = NAME

    def fill(self, cursor: CursorWrapper, rows: Sequence[Row]) -> int:
        if FAULT["armed"]:
            pausing = threading.Thread(target=service.pause, args=(NAME, "operator"))
            pausing.start()
            pausing.join()
            cursor.execute("SELECT 1 / 0")
        return super().fill(cursor, rows)


def test_a_slice_failing_while_the_job_is_paused_fails_the_job_and_retry_finishes(
    register, local_queue, drain, settings
):
    register(PausedThenFailingAdminGroups)
    settings.BACKFILL_MAX_ATTEMPTS = 1
    seed(1_000, share=0.2, existing_groups=20)
    FAULT["armed"] = True
    try:
        job = service.start(NAME, "test", JobOptions.build(batch_size=100, concurrency=1))
        drain(job)
    finally:
        FAULT["armed"] = False
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED, job.status
    assert "division by zero" in job.error
    assert Slice.objects.filter(job=job).failed().count() == 1

    job = drain(service.retry(NAME, "test"))
    assert job.status == JobStatus.SUCCEEDED
    assert not Organization.objects.filter(admin__isnull=True).exists()


def test_retry_after_revert_is_refused_on_the_cli_and_has_no_button(local_queue, client):
    seed(500, share=0.2, existing_groups=20)
    job = service.start("admin_groups", "test", JobOptions.build(batch_size=100, concurrency=1))
    transition(job, Action.FAIL, "worker", "slice 0 failed after 5 attempts: boom")
    job = service.revert_sync("admin_groups", "test")
    assert job.status == JobStatus.REVERTED

    with pytest.raises(CommandError) as refused:
        call_command("backfill", "retry", "admin_groups", stdout=io.StringIO())
    assert refused.value.returncode == 2
    assert "reverted" in str(refused.value)
    assert "\n" not in str(refused.value)
    client.force_login(
        User.objects.create_user("ann", password="x", is_staff=True, is_superuser=True)
    )
    assert buttons_on_page(client, job) == set()
    assert Organization.objects.filter(admin__isnull=True).count() == 500


def make_job(status: JobStatus) -> Job:
    """A job over an empty range in `status`, as the engine leaves it there."""
    Job.objects.all().delete()
    return Job.objects.create(
        definition="admin_groups",
        status=status,
        batch_size=100,
        concurrency=1,
        created_by="test",
        revert_started_at=None,
    )


def cli_exit_code(action: Action) -> int:
    args = ["--yes", "--sync"] if action == Action.REVERT else []
    try:
        call_command("backfill", action, "admin_groups", *args, stdout=io.StringIO())
    except CommandError as refused:
        return refused.returncode
    return 0


def buttons_on_page(client, job: Job) -> set[str]:
    page = client.get(f"/backfill/jobs/{job.pk}/").content.decode()
    actions = page.split('<div class="actions"', 1)[1].split("</div>", 1)[0]
    return set(re.findall(r'<button type="submit" class="([a-z-]+)"', actions))


@pytest.mark.parametrize("status", [s for s in JobStatus if s != JobStatus.PENDING])
def test_buttons_api_and_cli_offer_exactly_what_the_table_allows(status, local_queue, client):
    client.force_login(
        User.objects.create_user("bo", password="x", is_staff=True, is_superuser=True)
    )
    job = make_job(status)
    allowed = {str(action) for action in actions_for(job)}
    assert buttons_on_page(client, job) == allowed
    assert set(client.get(f"/backfill/api/jobs/{job.pk}/").json()["actions"]) == allowed
    accepted = set()
    for action in PEOPLE_ACTIONS:
        make_job(status)
        code = cli_exit_code(action)
        assert code in (0, 2), (action, code)
        if code == 0:
            accepted.add(str(action))
    assert accepted == allowed
    if status == JobStatus.FAILED:
        assert accepted == {"retry", "revert"}


@pytest.mark.parametrize("older", [JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.SUCCEEDED])
def test_an_older_job_offers_no_action_and_the_server_refuses_each_one(older, local_queue, client):
    """Only the latest job of a backfill is acted on: the table says so, so the
    page, the API and a forged POST agree, and the older job stays as it was."""
    client.force_login(
        User.objects.create_user("cy", password="x", is_staff=True, is_superuser=True)
    )
    Job.objects.all().delete()
    old = Job.objects.create(
        definition="admin_groups", status=older, batch_size=100, concurrency=1, created_by="test"
    )
    new = Job.objects.create(
        definition="admin_groups",
        status=JobStatus.SUCCEEDED,
        batch_size=100,
        concurrency=1,
        created_by="test",
    )
    assert actions_for(old) == []
    assert buttons_on_page(client, old) == set()
    assert client.get(f"/backfill/api/jobs/{old.pk}/").json()["actions"] == []
    for action in PEOPLE_ACTIONS:
        response = client.post(f"/backfill/jobs/{old.pk}/{action}/")
        assert response.status_code == 409, (action, response.status_code)
    refused = client.post(f"/backfill/jobs/{old.pk}/revert/").content.decode()
    assert f"job #{new.pk} is newer" in refused
    old.refresh_from_db()
    assert old.status == older
    assert actions_for(new) == [Action.REVERT]
