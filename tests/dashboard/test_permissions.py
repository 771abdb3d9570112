"""Each permission level sees and does exactly what it should, on the pages, the
buttons, the JSON API and a forged POST: staff without permissions nothing,
`view_job` the pages, `change_job` starting and steering, `revert_job` reverting,
superusers everything."""

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from backfill.engine import service
from backfill.models import Job, JobStatus
from tests.data import seed

pytestmark = pytest.mark.django_db(transaction=True)

LEVELS = {
    "staff-without-permissions": (),
    "view": ("view_job",),
    "change-without-view": ("change_job",),
    "change": ("view_job", "change_job"),
    "change-and-revert": ("view_job", "change_job", "revert_job"),
    "superuser": None,
}
# What each level may do: (see the pages, start and steer, revert).
MAY = {
    "staff-without-permissions": (False, False, False),
    "view": (True, False, False),
    "change-without-view": (False, False, False),  # every action needs view_job too
    "change": (True, True, False),
    "change-and-revert": (True, True, True),
    "superuser": (True, True, True),
}


def signed_in(level: str, username: str = "operator") -> Client:
    codenames = LEVELS[level]
    if codenames is None:
        user = User.objects.create_superuser(username, password="pw-operator-123")
    else:
        user = User.objects.create_user(username, password="pw-operator-123", is_staff=True)
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="backfill", codename__in=codenames)
        )
    client = Client()
    client.force_login(user)
    return client


def buttons(page: str) -> set[str]:
    actions = page.split('<div class="actions"', 1)[1].split("</div>", 1)[0]
    return set(re.findall(r'<button type="submit" class="([a-z-]+)"', actions))


def test_revert_is_a_permission_of_its_own():
    assert Permission.objects.filter(content_type__app_label="backfill", codename="revert_job")


@pytest.mark.parametrize("level", LEVELS)
def test_pages_api_and_pause_follow_the_permissions(level, local_queue):
    sees, steers, _ = MAY[level]
    seed(200)
    job = service.start("admin_groups", "test")
    client = signed_in(level)
    for url in ("/backfill/", "/backfill/fragment/", f"/backfill/jobs/{job.pk}/"):
        assert client.get(url).status_code == (200 if sees else 403), url
    api = client.get(f"/backfill/api/jobs/{job.pk}/")
    assert api.status_code == (200 if sees else 403)
    assert client.get("/metrics").status_code == (200 if sees else 403)
    if sees:
        page = client.get(f"/backfill/jobs/{job.pk}/").content.decode()
        offered = {"pause", "cancel"} if steers else set()
        assert buttons(page) == offered
        assert set(api.json()["actions"]) == offered
        dashboard = client.get("/backfill/").content.decode()
        # A running job's row says so; the other definition's Start shows with change_job.
        assert ('action="/backfill/start/search_names/"' in dashboard) == steers
    response = client.post(f"/backfill/jobs/{job.pk}/pause/")
    assert response.status_code == (302 if steers else 403)
    job.refresh_from_db()
    assert job.status == (JobStatus.PAUSED if steers else JobStatus.RUNNING)


@pytest.mark.parametrize("level", LEVELS)
def test_start_follows_the_permissions(level, local_queue):
    _, steers, _ = MAY[level]
    seed(50)
    client = signed_in(level)
    form = {"batch_size": 100, "concurrency": 1, "pause_ms": 0}
    response = client.post("/backfill/start/admin_groups/", form)
    assert response.status_code == (302 if steers else 403)
    assert Job.objects.exists() == steers


@pytest.mark.parametrize("level", LEVELS)
def test_revert_follows_the_permissions(level, local_queue):
    sees, _, reverts = MAY[level]
    seed(200)
    job = service.start("admin_groups", "test")
    service.cancel("admin_groups", "test")
    client = signed_in(level)
    if sees:
        page = client.get(f"/backfill/jobs/{job.pk}/").content.decode()
        # A cancelled job offers only revert (the lifecycle's table).
        assert buttons(page) == ({"revert"} if reverts else set())
        api = client.get(f"/backfill/api/jobs/{job.pk}/").json()
        assert ("revert" in api["actions"]) == reverts
    response = client.post(f"/backfill/jobs/{job.pk}/revert/")
    assert response.status_code == (302 if reverts else 403)
    job.refresh_from_db()
    assert (job.status == JobStatus.CANCELLED) != reverts


def test_a_refusal_for_lack_of_permission_comes_before_the_lifecycle(local_queue):
    """Someone who may not revert learns nothing of the job's state from a forged POST."""
    seed(50)
    job = service.start("admin_groups", "test")
    client = signed_in("change")
    response = client.post(f"/backfill/jobs/{job.pk}/revert/")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/plain")


def test_anonymous_visitors_go_to_the_login_page_and_the_api_refuses_them():
    client = Client()
    assert client.get("/backfill/").status_code == 302
    assert client.post("/backfill/jobs/1/pause/").status_code == 302
    assert client.get("/backfill/api/jobs/").status_code == 403
