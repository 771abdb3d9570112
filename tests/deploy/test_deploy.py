"""Secure and deployable by default: settings, health, the web process, the broker
only where needed, metrics Prometheus accepts, and the compose file."""

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client
from django.urls import path

from backfill.models import Job
from organizations.models import Organization
from tests.data import seed
from tests.processes import ROOT, PrivateRedis, manage, wait_for, worker_environment

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("back_to_expanded_state"),
]


UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"

# The production environment README.md documents ("Deploying").
PRODUCTION = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "backfill.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://backfill.example.com",
    "HTTPS": "true",
}


def production_env() -> dict[str, str]:
    env = {**worker_environment(), **PRODUCTION, "SECRET_KEY": secrets.token_urlsafe(50)}
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    env["REDIS_URL"] = env["TEST_REDIS_URL"]
    return env


def test_check_deploy_is_clean_with_the_documented_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("command", [["check"], ["backfill", "list"]])
def test_without_secret_key_and_debug_off_it_refuses_with_one_line(command):
    env = {k: v for k, v in production_env().items() if k != "SECRET_KEY"}
    result = manage(*command, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("SECRET_KEY is not set")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer é",
        "Bearer wrong-token",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer   ",
        "bearer right-token",
        "é",
    ],
)
def test_a_malformed_or_wrong_bearer_header_gets_403(settings, header):
    settings.BACKFILL_API_TOKEN = "right-token"
    for url in ("/metrics", "/backfill/api/jobs/"):
        response = Client().get(url, HTTP_AUTHORIZATION=header)
        assert response.status_code == 403, (url, header)
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer right-token").status_code == 200


def boom(request):
    raise RuntimeError("boom")


urlpatterns = [path("boom", boom)]


def test_an_error_page_never_shows_credentials(settings):
    settings.DEBUG = True
    settings.ROOT_URLCONF = __name__
    settings.DATABASE_URL = "postgres://app:db-s3cret@db:5432/backfill"
    settings.REDIS_URL = settings.CELERY_BROKER_URL = "redis://:redis-s3cret@redis:6379/0"
    settings.CELERY_RESULT_BACKEND = settings.REDIS_URL
    response = Client(raise_request_exception=False).get("/boom")
    assert response.status_code == 500
    page = response.content.decode()
    assert "DATABASE_URL" in page  # the settings are listed...
    assert "s3cret" not in page  # ...without the passwords in them


def test_password_reset_is_not_served():
    assert Client().get("/accounts/password_reset/").status_code == 404
    assert Client().get("/accounts/login/").status_code == 200


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = PrivateRedis(port, tmp_path / "redis.log")
    redis.start()
    yield redis
    redis.stop()


def test_readyz_follows_the_broker(settings, private_redis):
    settings.CELERY_BROKER_URL = private_redis.url
    client = Client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    private_redis.stop()
    down = client.get("/readyz")
    assert down.status_code == 503
    assert "broker cannot be reached" in down.json()["problems"][0]
    assert client.get("/healthz").status_code == 200
    private_redis.start()
    assert client.get("/readyz").status_code == 200


class Proxy:
    """A TCP relay to PostgreSQL that the test can cut: the database going away, as the
    app sees it, without stopping the shared server."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open.clear()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.connections.clear()

    def restore(self) -> None:
        self.open.set()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except (urllib.error.URLError, OSError):  # refused, reset, or not answering yet
        return False
    return True


def test_gunicorn_serves_static_files_and_readyz_follows_postgresql(tmp_path):
    """The production web process as documented: DEBUG off, collectstatic, gunicorn."""
    proxy = Proxy(int(worker_environment()["DATABASE_URL"].rsplit(":", 1)[1].split("/")[0]))
    env = production_env()
    env.update(HTTPS="false", ALLOWED_HOSTS="127.0.0.1", STATIC_ROOT=str(tmp_path))
    db_url = env["DATABASE_URL"]
    host_port, name = db_url.rsplit("@", 1)[1].split("/", 1)
    env["DATABASE_URL"] = db_url.replace(f"{host_port}/{name}", f"127.0.0.1:{proxy.port}/{name}")
    static = manage("collectstatic", "--no-input", "-v0", env=env)
    assert static.returncode == 0, static.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn is not None
    server = subprocess.Popen(
        [gunicorn, "project.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "gunicorn.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{base}/healthz"), timeout=30)
        css = next((tmp_path).rglob("*.css"))
        status, _ = get(f"{base}/static/{css.relative_to(tmp_path).as_posix()}")
        assert status == 200
        assert get(f"{base}/readyz")[0] == 200
        proxy.cut()
        status, body = get(f"{base}/readyz")
        assert status == 503
        assert "PostgreSQL cannot be reached" in json.loads(body)["problems"][0]
        assert get(f"{base}/healthz")[0] == 200
        proxy.restore()
        assert get(f"{base}/readyz")[0] == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
        proxy.listener.close()


def test_without_a_broker_sync_runs_checks_and_the_contract_still_work():
    seed(300)
    for command in (
        ["check"],
        ["backfill", "run", "admin_groups", "--sync"],
        ["backfill", "check", "admin_groups"],
    ):
        result = manage(*command, TEST_REDIS_URL=UNREACHABLE_REDIS)
        assert result.returncode == 0, (command, result.stderr)
    contract = manage("migrate", "organizations", "0006", TEST_REDIS_URL=UNREACHABLE_REDIS)
    assert contract.returncode == 0, contract.stderr
    assert not Organization.objects.filter(admin__isnull=True).exists()


def test_start_without_a_broker_refuses_with_one_line_and_creates_nothing(settings):
    seed(50)
    result = manage("backfill", "start", "admin_groups", TEST_REDIS_URL=UNREACHABLE_REDIS)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "broker cannot be reached at redis://127.0.0.1:1/0" in result.stderr
    settings.CELERY_BROKER_URL = UNREACHABLE_REDIS
    staff = Client()
    staff.force_login(staff_user())
    response = staff.post(
        "/backfill/start/admin_groups/",
        {"batch_size": 500, "concurrency": 2, "pause_ms": 0},
        follow=True,
    )
    assert "broker cannot be reached" in response.content.decode()
    assert not Job.objects.exists()


def staff_user() -> User:
    return User.objects.create_user("ops", password="x" * 12, is_staff=True)


def test_metrics_pass_promtool(settings):
    promtool = shutil.which("promtool") or shutil.which(
        "promtool", path=str(Path(sys.executable).parent)
    )
    if promtool is None:
        pytest.skip("promtool is not installed (make test extracts it into the venv where it can)")
    settings.BACKFILL_API_TOKEN = "token"
    seed(200)
    manage("backfill", "run", "admin_groups", "--sync")
    body = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer token").content
    assert b"backfill_job_rows_done_total" in body
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == b""


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_keeps_the_services_private_and_the_secrets_out_of_the_file():
    services = compose()["services"]
    assert "ports" not in services["db"]
    assert "ports" not in services["redis"]
    assert all(str(p).startswith("127.0.0.1:") for p in services["web"]["ports"])
    assert "--requirepass" in " ".join(services["redis"]["command"])
    for name in ("web", "worker", "beat"):
        service = services[name]
        env = service["environment"]
        assert env["DEBUG"] == "false"
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
        assert env["DATABASE_URL"].startswith("postgres://backfill:${APP_DB_PASSWORD:?")
        assert env["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
        assert service["env_file"] == ".env"
        assert "runserver" not in str(service["command"])
    assert "gunicorn project.wsgi" in services["web"]["command"]
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_the_env_example_names_every_variable_compose_requires_and_env_is_ignored():
    text = (ROOT / "docker-compose.yml").read_text()
    required = {part.split(":?")[0] for part in text.split("${")[1:] if ":?" in part.split("}")[0]}
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert required <= set(example), required - set(example)
    ignored = subprocess.run(
        ["git", "check-ignore", ".env"], cwd=ROOT, capture_output=True, check=False
    )
    assert ignored.returncode == 0
    assert os.path.exists(ROOT / "scripts" / "compose-db-init.sh")
