"""The production setup an attacker and an operator meet: compose's health check under
the documented environment, login throttling, what the health and API answers
reveal, refusals in plain text, long usernames, passwords in URLs, error pages."""

import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import path

from backfill.engine import service
from backfill.models import Event, Job, JobStatus
from tests.data import seed
from tests.deploy.test_deploy import answers, get, production_env
from tests.processes import ROOT, PrivateRedis, manage, wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
# A password that breaks a URL pasted together: fragment, path and host separators.
AWKWARD_PASSWORD = "p#ss/w@rd:x?"


def compose_healthcheck() -> list[str]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    test = services["web"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return test[1:]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = PrivateRedis(port, tmp_path / "redis.log")
    redis.start()
    yield redis
    redis.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_compose_health_check_passes_under_the_documented_production_settings(
    tmp_path, private_redis
):
    """Exactly the request compose sends, to gunicorn with ALLOWED_HOSTS, HTTPS and
    the redirect as README documents them; 503 (a failed check) once Redis is down.
    Prometheus in the compose network scrapes /metrics as `web` over plain HTTP."""
    subprocess.run(
        ["redis-cli", "-p", str(private_redis.port), "config", "set", "requirepass", "pw"],
        check=True,
        capture_output=True,
    )
    env = production_env()
    env.update(
        ALLOWED_HOSTS=env["ALLOWED_HOSTS"] + ",web",
        REDIS_URL=f"redis://:pw@127.0.0.1:{private_redis.port}/0",
        BACKFILL_API_TOKEN="scrape-token",
        STATIC_ROOT=str(tmp_path),
    )
    port = free_port()
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn is not None
    server = subprocess.Popen(
        [gunicorn, "project.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "gunicorn.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    check = [
        sys.executable if part == "python" else part.replace(":8000/", f":{port}/")
        for part in compose_healthcheck()
    ]
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=30)
        healthy = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
        assert healthy.returncode == 0, healthy.stderr
        assert get(f"http://127.0.0.1:{port}/readyz") == (200, '{"ready": true}')
        scrape = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Host": "web:8000", "Authorization": "Bearer scrape-token"},
        )
        with urllib.request.urlopen(scrape, timeout=30) as response:
            assert response.status == 200
        private_redis.stop()
        unhealthy = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
        assert unhealthy.returncode != 0
        assert "503" in unhealthy.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_health_paths_skip_the_host_check_only_for_loopback(settings):
    settings.ALLOWED_HOSTS = ["backfill.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    inside = Client(REMOTE_ADDR="127.0.0.1", HTTP_HOST="127.0.0.1:8000")
    assert inside.get("/readyz").status_code in (200, 503)
    assert inside.get("/healthz").status_code == 200
    assert Client(REMOTE_ADDR="::1", HTTP_HOST="[::1]:8000").get("/healthz").status_code == 200
    outside = Client(REMOTE_ADDR="10.1.2.3", HTTP_HOST="127.0.0.1:8000")
    assert outside.get("/readyz").status_code == 400
    assert inside.get("/backfill/").status_code == 400


def test_readyz_details_only_for_staff_and_the_token(settings):
    settings.CELERY_BROKER_URL = UNREACHABLE_REDIS
    settings.BACKFILL_API_TOKEN = "monitor-token"
    anonymous = Client().get("/readyz")
    assert anonymous.status_code == 503
    assert anonymous.json() == {"ready": False}
    token = Client().get("/readyz", HTTP_AUTHORIZATION="Bearer monitor-token")
    assert "broker cannot be reached" in token.json()["problems"][0]
    staff = Client()
    staff.force_login(User.objects.create_user("ops", password="pw-ops-12345", is_staff=True))
    assert "broker cannot be reached" in staff.get("/readyz").json()["problems"][0]


def test_the_eleventh_login_after_ten_failures_is_refused():
    User.objects.create_superuser("root", password="right-horse-battery")
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(10):
        attacker.post("/accounts/login/", {"username": "root", "password": "wrong-guess"})
    locked = attacker.post(
        "/accounts/login/", {"username": "root", "password": "right-horse-battery"}
    )
    assert locked.status_code == 429
    assert attacker.get("/backfill/").status_code == 302  # not signed in
    # Per user and address: the owner, elsewhere, still signs in.
    owner = Client(REMOTE_ADDR="198.51.100.9")
    signed = owner.post("/accounts/login/", {"username": "root", "password": "right-horse-battery"})
    assert signed.status_code == 302
    assert owner.get("/backfill/").status_code == 200


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_a_username_longer_than_any_column_gets_the_failed_login_page(url):
    """Throttling records the username it is given: one longer than its columns
    (255 characters) is cut to the longest a user can have, not a 500."""
    User.objects.create_superuser("root", password="right-horse-battery")
    client = Client(raise_request_exception=False)
    for name in ("x" * 300, "y" * 100_000):
        response = client.post(url, {"username": name, "password": "wrong-guess"})
        assert response.status_code == 200, name[:1]
        assert response.context["form"].errors  # the failed-login page
        assert AccessAttempt.objects.filter(username=name[:150]).exists()  # still counted


@pytest.mark.parametrize("password", ["password", "12345678", "backfill1", "short-pw"])
def test_weak_passwords_are_refused(password):
    with pytest.raises(ValidationError):
        validate_password(password, User(username="operator"))
    validate_password("correct-horse-battery-staple", User(username="operator"))


def test_a_username_of_150_characters_can_act(local_queue):
    seed(100)
    client = Client()
    name = "u" * 150
    client.force_login(User.objects.create_superuser(name, password="pw-long-12345"))
    form = {"batch_size": 100, "concurrency": 1, "pause_ms": 0}
    assert client.post("/backfill/start/admin_groups/", form).status_code == 302
    job = Job.objects.get()
    assert job.created_by == f"web:{name}"
    assert client.post(f"/backfill/jobs/{job.pk}/pause/").status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.PAUSED
    assert Event.objects.filter(job=job, action="pause", actor=f"web:{name}").exists()


def test_refusals_echo_input_as_plain_text_not_html(local_queue):
    client = Client()
    client.force_login(User.objects.create_superuser("ops", password="pw-ops-12345"))
    probe = "%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    unknown = client.post(f"/backfill/start/{probe.replace('%2F', '')}/")
    assert unknown.status_code == 400
    assert unknown["Content-Type"].startswith("text/plain")
    seed(50)
    job = service.start("admin_groups", "test")
    action = client.post(f"/backfill/jobs/{job.pk}/%3Cimg%20src=x%3E/")
    assert action.status_code == 400
    assert action["Content-Type"].startswith("text/plain")
    form = client.post("/backfill/start/admin_groups/", {"batch_size": "<b>", "concurrency": 1})
    assert form.status_code == 400
    assert form["Content-Type"].startswith("text/plain")


def test_a_lowercase_bearer_is_accepted_and_the_token_sees_figures_not_sql(settings, local_queue):
    settings.BACKFILL_API_TOKEN = "right-token"
    seed(200)
    job = service.start("admin_groups", "test")
    held = [{"key": 7, "pid": 4242, "state": "idle", "age_seconds": 9.0, "query": "SELECT ssn"}]
    job.slices.filter(number=0).update(
        held_keys=[7], held=held, last_error='Traceback (most recent call last):\n  File "x"'
    )
    for scheme in ("bearer", "BEARER", "Bearer"):
        auth = f"{scheme} right-token"
        assert Client().get("/metrics", HTTP_AUTHORIZATION=auth).status_code == 200
        response = Client().get(f"/backfill/api/jobs/{job.pk}/", HTTP_AUTHORIZATION=auth)
        assert response.status_code == 200
        body = response.content.decode()
        assert "SELECT ssn" not in body
        assert "Traceback" not in body
        assert response.json()["held"][0]["pid"] == 4242
        assert response.json()["actions"] == []  # the token may do nothing
        listing = Client().get("/backfill/api/jobs/", HTTP_AUTHORIZATION=auth)
        assert "SELECT ssn" not in listing.content.decode()
        assert "Traceback" not in listing.content.decode()
        assert [j["actions"] for j in listing.json()["jobs"]] == [[]]


@pytest.mark.parametrize(
    ("raw", "password"),
    [
        (f"redis://:{AWKWARD_PASSWORD}@redis:6379/0", AWKWARD_PASSWORD),
        ("redis://:p%23ss@redis:6379/0", "p#ss"),
        ("redis://redis:6379/0", None),
        ("postgres://app:a/b#c@db:5432/backfill", "a/b#c"),
    ],
)
def test_passwords_in_urls_are_encoded(raw, password):
    from kombu.utils.url import url_to_parts

    from project.settings import url_with_quoted_password

    encoded = url_with_quoted_password(raw)
    assert url_with_quoted_password(encoded) == encoded
    assert url_to_parts(encoded).password == password


@pytest.mark.parametrize(
    ("raw", "password", "options"),
    [
        (
            "postgres://backfill:pw@db:5432/backfill?sslmode=require&sslrootcert=/etc/ssl/ca@2024.pem",
            "pw",
            {"sslmode": "require", "sslrootcert": "/etc/ssl/ca@2024.pem"},
        ),
        (
            "postgres://backfill:p@ss?/w#rd@db:5432/backfill?application_name=ops@host",
            "p@ss?/w#rd",
            {"application_name": "ops@host"},
        ),
        ("postgres://backfill:a?b@db:5432/backfill", "a?b", {}),
    ],
)
def test_an_at_sign_in_the_query_string_stays_in_the_query(raw, password, options):
    """The credentials end at the last `@` before the query, which starts at the first
    `?name=`: a password may hold `@`, `?`, `/`, `#` unencoded, the query `@`."""
    import dj_database_url

    from project.settings import url_with_quoted_password

    encoded = url_with_quoted_password(raw)
    assert url_with_quoted_password(encoded) == encoded
    parsed = dj_database_url.parse(encoded)
    assert (parsed["USER"], parsed["PASSWORD"]) == ("backfill", password)
    assert (parsed["HOST"], parsed["PORT"], parsed["NAME"]) == ("db", 5432, "backfill")
    assert parsed.get("OPTIONS", {}) == options


def test_readyz_with_an_unencoded_redis_password_answers(private_redis):
    """The variable as compose writes it (`redis://:${REDIS_PASSWORD}@...`), through the
    production settings: ready, no 500, no piece of the password anywhere."""
    subprocess.run(
        [
            "redis-cli",
            "-p",
            str(private_redis.port),
            "config",
            "set",
            "requirepass",
            AWKWARD_PASSWORD,
        ],
        check=True,
        capture_output=True,
    )
    env = production_env()
    env["REDIS_URL"] = f"redis://:{AWKWARD_PASSWORD}@127.0.0.1:{private_redis.port}/0"
    script = (
        "from django.test import Client; "
        "r = Client(REMOTE_ADDR='127.0.0.1').get('/readyz'); "
        "print(r.status_code, r.content.decode())"
    )
    result = manage("shell", "-c", script, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == '200 {"ready": true}'
    assert "w@rd" not in result.stderr


def test_x_forwarded_proto_is_trusted_only_when_asked():
    script = "from django.conf import settings; print(getattr(settings, 'SECURE_PROXY_SSL_HEADER', None))"
    untrusted = {k: v for k, v in production_env().items() if k != "TRUST_X_FORWARDED_PROTO"}
    plain = manage("shell", "-c", script, env=untrusted)
    assert plain.stdout.strip().splitlines()[-1] == "None"
    trusted = manage("shell", "-c", script, env={**untrusted, "TRUST_X_FORWARDED_PROTO": "true"})
    assert trusted.stdout.strip().splitlines()[-1] == "('HTTP_X_FORWARDED_PROTO', 'https')"


def test_make_web_runs_production_like_unless_debug_is_asked_for():
    # Not the calling make's flags either (`make test` runs pytest under `make -j2`).
    left_out = ("SECRET_KEY", "DEBUG", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in production_env().items() if k not in left_out}
    refused = subprocess.run(
        ["make", "-n", "web"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "SECRET_KEY is not set" in refused.stderr
    assert "secrets.token_urlsafe" in refused.stderr
    for extra, debug in (({"SECRET_KEY": "k" * 50}, "false"), ({}, "true")):
        args = ["make", "-pn", "web"] + (["DEBUG=true"] if not extra else [])
        listed = subprocess.run(
            args, cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, check=False
        )
        assert f"DEBUG := {debug}" in listed.stdout or f"DEBUG = {debug}" in listed.stdout


def test_the_image_runs_as_a_user_and_every_image_is_pinned():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")
    images = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    images += [s["image"] for s in services.values() if "image" in s]
    for image in images:
        tag = image.split(":", 1)[1]
        assert tag.split("-")[0].count(".") >= 1 or "@sha256:" in image, image
    healthcheck = services["db"]["healthcheck"]["test"][1]
    assert " -h " in healthcheck


def leaky(request):
    secret = "-".join(["db", "s3cret"])  # the page shows this line, not the value
    conn_params = {"host": "db", "password": secret}  # noqa: F841
    conninfo = f"host=db user=app password={secret}"  # noqa: F841
    raise RuntimeError("connection failed")


urlpatterns = [path("leaky", leaky)]


def test_a_debug_page_hides_passwords_in_traceback_variables(settings):
    settings.DEBUG = True
    settings.ROOT_URLCONF = __name__
    response = Client(raise_request_exception=False).get("/leaky", HTTP_COOKIE="sessionid=x")
    assert response.status_code == 500
    page = response.content.decode()
    assert "conn_params" in page
    assert "db-s3cret" not in page


def test_a_health_answer_is_json(settings):
    body = Client(REMOTE_ADDR="127.0.0.1").get("/readyz").content
    assert set(json.loads(body)) == {"ready"}
