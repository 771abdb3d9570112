"""The dashboard through Django's test client: access, CSRF, bad input, audit."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from backfill import conf
from backfill.engine import service
from backfill.engine.options import JobOptions
from backfill.models import Event, Job, JobStatus, Sample, Slice
from tests.data import seed
from tests.e2e.readable import raw_figures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff(client):
    """An operator with every permission on jobs."""
    user = User.objects.create_superuser("alice", password="pw-alice-123")
    client.force_login(user)
    return client


@pytest.mark.parametrize("url", ["/backfill/", "/backfill/fragment/", "/backfill/jobs/1/"])
def test_anonymous_users_go_to_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_the_login_page_works_out_of_the_box(client):
    User.objects.create_superuser("bob", password="pw-bob-12345")
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "bob", "password": "pw-bob-12345"})
    assert response.status_code == 302
    assert client.get("/backfill/").status_code == 200


def test_signed_in_users_without_permissions_get_403(client):
    client.force_login(User.objects.create_user("eve", password="x"))
    assert client.get("/backfill/").status_code == 403
    assert (
        client.post(
            "/backfill/start/admin_groups/", {"batch_size": 100, "concurrency": 1, "pause_ms": 0}
        ).status_code
        == 403
    )
    assert not Job.objects.exists()


def test_the_dashboard_lists_definitions_with_a_start_button(staff):
    body = staff.get("/backfill/").content.decode()
    assert "admin_groups" in body
    assert "search_names" in body
    assert 'action="/backfill/start/admin_groups/"' in body


def test_start_creates_a_job_recorded_with_the_user(staff, local_queue):
    seed(200)
    response = staff.post(
        "/backfill/start/admin_groups/", {"batch_size": 500, "concurrency": 2, "pause_ms": 0}
    )
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/backfill/jobs/{job.pk}/"
    assert (job.batch_size, job.concurrency, job.created_by) == (500, 2, "web:alice")
    assert Event.objects.filter(job=job, action="start", actor="web:alice").exists()
    page = staff.get(f"/backfill/jobs/{job.pk}/").content.decode()
    assert "Pause" in page
    assert "<svg" in page


@pytest.mark.parametrize(
    "form",
    [
        {"batch_size": "abc", "concurrency": 1, "pause_ms": 0},
        {"batch_size": -1, "concurrency": 1, "pause_ms": 0},
        {"batch_size": 100, "concurrency": 0, "pause_ms": 0},
        {"batch_size": 100, "concurrency": 1, "pause_ms": -5},
        {"batch_size": 10_000_000, "concurrency": 1, "pause_ms": 0},
        {"concurrency": 1, "pause_ms": 0},
        {"batch_size": 100, "concurrency": 1, "pause_ms": 0, "replica_lag_seconds": -1},
        {"batch_size": 100, "concurrency": 1, "pause_ms": 0, "latency_ratio": 1.05},
        {"batch_size": 100, "concurrency": 1, "pause_ms": 0, "latency_ratio": "nan"},
        {"batch_size": 100, "concurrency": 1, "pause_ms": 0, "transaction_age_seconds": "inf"},
        {"batch_size": 100, "concurrency": 1, "pause_ms": 0, "pace": "sometimes"},
    ],
)
def test_bad_form_values_are_rejected_with_a_message_and_change_nothing(staff, form):
    response = staff.post("/backfill/start/admin_groups/", form)
    assert response.status_code == 400
    assert b"not started" in response.content
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("batch_size", "abc", b"batch size: Enter a whole number."),
        ("latency_ratio", "nan", b"max latency ratio: Enter a number."),
        ("pace", "sometimes", b"pacing: Select a valid choice."),
    ],
)
def test_a_bad_value_is_answered_with_the_name_of_its_field(staff, field, value, named):
    form = {"batch_size": 100, "concurrency": 1, "pause_ms": 0, field: value}
    response = staff.post("/backfill/start/admin_groups/", form)
    assert response.status_code == 400
    assert named in response.content
    assert not Job.objects.exists()


def test_the_start_form_sets_pacing_and_the_job_page_shows_it(staff, local_queue):
    seed(200)
    form = {"batch_size": 500, "concurrency": 1, "pause_ms": 10, "pace": "auto"}
    form |= {"replica_lag_seconds": 2.5, "latency_ratio": 3, "wal_mb_per_second": 40}
    assert staff.post("/backfill/start/admin_groups/", form).status_code == 302
    job = Job.objects.get()
    assert (job.pace, job.max_replica_lag_seconds, job.max_latency_ratio) == (True, 2.5, 3.0)
    assert (job.max_wal_mb_per_second, job.max_transaction_age_seconds) == (40.0, 300.0)
    assert job.latency_baseline_ms is not None
    assert job.latency_baseline_ms > 0
    Job.objects.filter(pk=job.pk).update(pace_pause_ms=640, pace_limit="replica_lag")
    page = staff.get(f"/backfill/jobs/{job.pk}/").content.decode()
    assert "Slowed to a 640 ms pause between batches by replica lag (budget 2.5 s)" in page
    status = staff.get(f"/backfill/api/jobs/{job.pk}/").json()
    assert status["pace"]["limit"] == "replica_lag"
    assert status["pace"]["budgets"]["replica_lag_seconds"] == 2.5
    assert status["pace"]["workers_writing"] == 1
    assert "workers writing" not in page  # none shed


def test_workers_shed_for_latency_on_the_page_the_api_and_metrics(staff, local_queue):
    seed(200)
    job = service.start("admin_groups", "test", JobOptions.build(concurrency=3, pace=True))
    until = timezone.now() + timedelta(minutes=5)
    Job.objects.filter(pk=job.pk).update(
        pace_workers=1, pace_limit="latency", pause_given_up_until=until
    )
    page = staff.get(f"/backfill/jobs/{job.pk}/").content.decode()
    assert "1 of 3 workers writing" in page
    pace = staff.get(f"/backfill/api/jobs/{job.pk}/").json()["pace"]
    assert pace["workers_writing"] == 1
    assert pace["pause_given_up_until"] == until.isoformat()
    body = staff.get("/metrics").content.decode()
    assert f'backfill_job_pace_workers{{definition="admin_groups",job="{job.pk}"}} 1.0' in body


def test_pacing_off_from_the_form(staff, local_queue):
    seed(200)
    form = {"batch_size": 500, "concurrency": 1, "pause_ms": 0, "pace": "off"}
    assert staff.post("/backfill/start/admin_groups/", form).status_code == 302
    job = Job.objects.get()
    assert (job.pace, job.latency_baseline_ms) == (False, None)
    assert "pacing off" in staff.get(f"/backfill/jobs/{job.pk}/").content.decode()


def test_an_unknown_definition_is_rejected(staff):
    response = staff.post(
        "/backfill/start/nope/", {"batch_size": 100, "concurrency": 1, "pause_ms": 0}
    )
    assert response.status_code == 400
    assert not Job.objects.exists()


def test_post_without_csrf_token_is_refused():
    User.objects.create_superuser("carol", password="pw-carol-123")
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.get(username="carol"))
    response = client.post(
        "/backfill/start/admin_groups/", {"batch_size": 100, "concurrency": 1, "pause_ms": 0}
    )
    assert response.status_code == 403
    assert not Job.objects.exists()


def test_get_on_an_action_url_is_refused(staff, local_queue):
    seed(200)
    job = service.start("admin_groups", "test")
    assert staff.get(f"/backfill/jobs/{job.pk}/pause/").status_code == 405
    assert staff.get("/backfill/start/admin_groups/").status_code == 405
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def test_unknown_job_is_404_and_unknown_action_400(staff, local_queue):
    assert staff.get("/backfill/jobs/999999/").status_code == 404
    assert staff.post("/backfill/jobs/999999/pause/").status_code == 404
    seed(200)
    job = service.start("admin_groups", "test")
    assert staff.post(f"/backfill/jobs/{job.pk}/explode/").status_code == 400


def test_pause_resume_cancel_from_the_page_are_audited(staff, local_queue):
    seed(200)
    job = service.start("admin_groups", "test")
    for action, status in [("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")]:
        assert staff.post(f"/backfill/jobs/{job.pk}/{action}/").status_code == 302
        job.refresh_from_db()
        assert job.status == status
        assert Event.objects.filter(job=job, action=action, actor="web:alice").exists()


def test_acting_on_an_older_job_is_refused(staff, local_queue):
    seed(200)
    old = service.start("admin_groups", "test")
    service.cancel("admin_groups", "test")
    service.start("admin_groups", "test")
    assert staff.post(f"/backfill/jobs/{old.pk}/revert/").status_code == 409


def test_json_api_needs_the_view_permission_or_the_token(client, settings, local_queue):
    settings.BACKFILL_API_TOKEN = "s3cret-token"
    seed(200)
    job = service.start("admin_groups", "test")
    assert client.get("/backfill/api/jobs/").status_code == 403
    assert client.get("/backfill/api/jobs/", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    data = client.get(
        f"/backfill/api/jobs/{job.pk}/", HTTP_AUTHORIZATION="Bearer s3cret-token"
    ).json()
    assert {
        "name",
        "status",
        "rows_done",
        "rows_total",
        "rows_per_second",
        "eta_seconds",
        "slices",
    } <= data.keys()
    assert (
        client.get(
            "/backfill/api/jobs/424242/", HTTP_AUTHORIZATION="Bearer s3cret-token"
        ).status_code
        == 404
    )


def test_metrics_expose_rows_and_status(staff, local_queue):
    seed(200)
    service.start("admin_groups", "test")
    body = staff.get("/metrics").content.decode()
    assert 'backfill_job_rows_done_total{definition="admin_groups"' in body
    assert 'backfill_job_status{definition="admin_groups"' in body
    assert "backfill_batch_duration_seconds_bucket" in body


def test_the_job_page_names_the_session_holding_rows_the_job_waits_on(staff, local_queue):
    seed(200)
    job = service.start("admin_groups", "test")
    held = [
        {
            "key": 7,
            "pid": 4242,
            "state": "idle in transaction",
            "age_seconds": 93.5,
            "query": "SELECT monthly_report()",
        }
    ]
    job.slices.filter(number=0).update(held_keys=[7], held=held)
    page = staff.get(f"/backfill/jobs/{job.pk}/").content.decode()
    assert "Waiting on rows held by other transactions" in page
    assert "4242" in page
    assert "monthly_report()" in page
    assert staff.get(f"/backfill/api/jobs/{job.pk}/").json()["held"] == held


def test_lock_timeouts_per_job_on_the_page_the_api_and_metrics(staff, local_queue):
    """A batch that gave up waiting for a lock is counted on its slice, never reset,
    and the job's sum is shown wherever its progress is."""
    seed(200)
    job = service.start("admin_groups", "test")
    first, second = job.slices.order_by("number")[:2]
    Slice.objects.filter(pk=first.pk).update(lock_timeouts_total=2)
    Slice.objects.filter(pk=second.pk).update(lock_timeouts_total=1)
    page = staff.get(f"/backfill/jobs/{job.pk}/").content.decode()
    assert '<span id="lock-timeouts">3 lock timeouts</span>' in page
    api = staff.get(f"/backfill/api/jobs/{job.pk}/").json()
    assert api["lock_timeouts"] == 3
    assert [s["lock_timeouts"] for s in api["slices"][:2]] == [2, 1]
    metrics = staff.get("/metrics").content.decode()
    assert (
        f'backfill_job_lock_timeouts_total{{definition="admin_groups",job="{job.pk}"}} 3.0'
        in metrics
    )


def test_the_start_form_states_its_defaults_and_folds_its_options(staff):
    body = staff.get("/backfill/").content.decode()
    form = body.split('action="/backfill/start/admin_groups/"')[1].split("</form>")[0]
    shown, folded = form.split("<details>")
    assert "2 workers" in shown
    assert 'aria-label="Start admin_groups"' in shown
    inputs = re.findall(r"<(?:input|select|textarea)\b[^>]*>", shown)
    assert len([tag for tag in inputs if 'type="hidden"' not in tag]) <= 4
    # Every folded control is inside its label, so it has a name.
    assert folded.count("<label>") == len(re.findall(r"<(?:input|select)\b", folded)) == 8


def test_large_figures_have_thousands_separators_on_every_page(staff, local_queue):
    seed(200)
    job = service.start("admin_groups", "test")
    Job.objects.filter(pk=job.pk).update(rows_total=1_000_000, rows_total_is_estimate=True)
    first = job.slices.order_by("number").first()
    Slice.objects.filter(pk=first.pk).update(
        rows_done=498_957, rows_expected=506_559, after="250000", high="1000000"
    )
    for url in ["/backfill/", "/backfill/fragment/", f"/backfill/jobs/{job.pk}/"]:
        page = staff.get(url).content.decode()
        assert raw_figures(page) == [], url
        assert "498,957" in page
    page = staff.get(f"/backfill/jobs/{job.pk}/fragment/").content.decode()
    assert raw_figures(page) == []
    assert "498,957 of about 506,559" in page
    assert "keys 250,001 to 1,000,000" in page or "of the names, by hash" in page


def test_the_job_page_says_what_a_paced_stop_waits_for(staff, local_queue):
    seed(200)
    job = service.start("admin_groups", "test", JobOptions.build(pace=True))
    ceiling = conf.current().max_pace_pause_ms
    Job.objects.filter(pk=job.pk).update(pace_pause_ms=ceiling, pace_limit="replica_lag")
    page = staff.get(f"/backfill/jobs/{job.pk}/").content.decode()
    assert "Stopped by replica lag (budget 5 s)" in page
    assert "replica lag to come down" in page
    assert "go on once it is under its budget (5 s)" in page


def test_the_live_part_stops_asking_once_nothing_runs(staff, local_queue):
    seed(200)
    job = service.start("admin_groups", "test")
    assert 'data-live="true"' in staff.get(f"/backfill/jobs/{job.pk}/fragment/").content.decode()
    assert 'data-live="true"' in staff.get("/backfill/fragment/").content.decode()
    service.pause("admin_groups", "test")
    # Paused, it waits for a person: nothing to refresh every second.
    assert 'data-live="false"' in staff.get(f"/backfill/jobs/{job.pk}/fragment/").content.decode()
    assert 'data-live="false"' in staff.get("/backfill/fragment/").content.decode()
    service.cancel("admin_groups", "test")
    assert 'data-live="false"' in staff.get(f"/backfill/jobs/{job.pk}/fragment/").content.decode()
    assert 'data-live="false"' in staff.get("/backfill/fragment/").content.decode()


def test_a_sample_stamped_by_a_clock_ahead_of_ours_does_not_break_the_pages(staff, local_queue):
    seed(200)
    job = service.start("admin_groups", "test")
    Sample.objects.filter(job=job).delete()
    ahead = timezone.now() + timedelta(seconds=5)
    sample = Sample.objects.create(
        job=job, slice_number=0, rows=100, duration_ms=40, batch_size=100
    )
    Sample.objects.filter(pk=sample.pk).update(at=ahead)
    assert staff.get(f"/backfill/jobs/{job.pk}/").status_code == 200
    assert staff.get("/backfill/").status_code == 200


def test_every_chart_has_axes_ticks_and_units(staff, local_queue):
    seed(200)
    job = service.start("admin_groups", "test", JobOptions.build(pace=True))
    start = timezone.now()
    for i in range(30):
        sample = Sample.objects.create(
            job=job,
            slice_number=0,
            rows=500 + i * 10,
            duration_ms=40,
            batch_size=500,
            pause_ms=20 * (i % 5),
            limit="replica_lag" if i > 20 else "",
        )
        # `at` is set on insert: move each batch to its place in the minute.
        Sample.objects.filter(pk=sample.pk).update(at=start + timedelta(seconds=i * 2))
    page = staff.get(f"/backfill/jobs/{job.pk}/").content.decode()
    charts = re.findall(r'<svg class="chart".*?</svg>', page, re.S)
    assert len(charts) == 3
    for chart in charts:
        assert len(re.findall(r"<text\b", chart)) >= 4
        assert "time (min:s)" in chart
    assert "rows/s" in charts[0]
    assert "limited by: nothing" in charts[2]
    assert "replica lag" in charts[2]
