"""Real processes for tests (workers, beat, Redis, `manage.py`): started as subprocesses,
stopped by pid, and waited on from outside, as an operator would."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.db import connection

from project.celery import app

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def worker_environment() -> dict[str, str]:
    """The environment a worker needs to see the test database and broker."""
    db = connection.settings_dict
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["DATABASE_URL"] = (
        f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        if not db.get("PASSWORD")
        else f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )
    env["TEST_REDIS_URL"] = settings.CELERY_BROKER_URL
    env["PYTHONPATH"] = str(ROOT)
    return env


def manage(
    *args: str, env: dict[str, str] | None = None, **changes: str
) -> subprocess.CompletedProcess[str]:
    """`manage.py ARGS` in a process of its own, in the environment the tests' workers
    get (or `env`), with these variables changed."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**(env if env is not None else worker_environment()), **changes},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def manage_at_once(*args: str, runs: int = 2) -> list[subprocess.CompletedProcess[str]]:
    """`manage.py ARGS` in `runs` processes started together, as two deploys would race."""
    with ThreadPoolExecutor(max_workers=runs) as pool:
        return list(pool.map(lambda _: manage(*args), range(runs)))


def wait_for(predicate: Callable[[], T | None], timeout: float = 120.0, interval: float = 0.2) -> T:
    """The first truthy value of `predicate`, polled every `interval` seconds; TimeoutError
    once `timeout` seconds pass without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


@dataclass
class Worker:
    """One `celery worker` process (prefork pool of one child)."""

    name: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "project",
                "worker",
                "-Q",
                "backfill,default",
                "-c",
                "1",
                "-n",
                f"{self.name}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
                *self.extra_args,
            ],
            cwd=ROOT,
            env={**worker_environment(), **self.extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_until_ready(timeout)

    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"worker {self.name} exited: {self.log_path.read_text()[-2000:]}"
                )
            if "ready." in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not ready after {timeout}s")

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool child."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM); SIGKILL if it does not end in time."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Beat:
    """`celery beat`, which runs the sweeper every second under the test settings."""

    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "project",
                "beat",
                "-l",
                "INFO",
                "-s",
                str(self.log_path.with_suffix(".schedule")),
            ],
            cwd=ROOT,
            env={**worker_environment(), **self.extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def purge_broker() -> None:
    """Drop messages left by an earlier test so each test starts from a clean queue."""
    with app.connection_for_write() as conn:
        for queue in ("backfill", "default"):
            try:
                conn.default_channel.queue_purge(queue)  # type: ignore[attr-defined]
            except Exception:
                continue


@dataclass
class PrivateRedis:
    """A Redis server of the test's own, without persistence, that it may restart."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise TimeoutError(f"redis on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
