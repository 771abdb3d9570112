"""Real Celery worker processes for a benchmark run, with their peak memory sampled.

With them runs Celery beat, as in a deployment: its sweep dispatches a slice
handed back for later (paced, or waiting on rows another transaction holds)
when no other slice's hand-over comes to do it. Its memory is not a
worker's, and is not counted.
"""

import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import psutil
import redis

from benchmarks.databases import ROOT, env_for

BROKER_URL = "redis://127.0.0.1:6379/14"
MEMORY_SAMPLE_SECONDS = 0.2
READY_TIMEOUT = 60.0


def resident_mb(pid: int) -> float:
    """A worker's resident memory: its main process plus its pool child."""
    try:
        process = psutil.Process(pid)
        members = [process, *process.children(recursive=True)]
        return float(sum(p.memory_info().rss for p in members)) / 2**20
    except psutil.Error:
        return 0.0


class Workers:
    """`count` workers of one pool process each, on a broker database of their own."""

    def __init__(
        self,
        db: str,
        count: int,
        logs: Path,
        extra_env: dict[str, str] | None = None,
        broker: str = BROKER_URL,
    ) -> None:
        self.db, self.count, self.logs, self.broker = db, count, logs, broker
        self.extra_env = extra_env or {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.beat: subprocess.Popen[bytes] | None = None
        self.peak_mb = 0.0
        self.stopping = threading.Event()
        self.sampler = threading.Thread(target=self.sample_memory, daemon=True)

    def __enter__(self) -> "Workers":
        redis.Redis.from_url(self.broker).flushdb()
        self.logs.mkdir(parents=True, exist_ok=True)
        for number in range(self.count):
            self.processes.append(self.start(number))
        for number in range(self.count):
            self.wait_until_ready(number)
        self.beat = self.start_beat()
        self.sampler.start()
        return self

    def start_beat(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "project", "beat", "-l", "INFO"),
                *("-s", str(self.logs / "celerybeat-schedule")),
            ],
            cwd=ROOT,
            env=env_for(self.db, REDIS_URL=self.broker, **self.extra_env),
            stdout=(self.logs / "beat.log").open("w"),
            stderr=subprocess.STDOUT,
        )

    def start(self, number: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "project", "worker"),
                *("-Q", "backfill,default", "-c", "1", "-n", f"bench{number}@%h"),
                *("--without-gossip", "--without-mingle", "-l", "INFO"),
            ],
            cwd=ROOT,
            env=env_for(self.db, REDIS_URL=self.broker, **self.extra_env),
            stdout=self.log(number).open("w"),
            stderr=subprocess.STDOUT,
        )

    def log(self, number: int) -> Path:
        return self.logs / f"worker{number}.log"

    def wait_until_ready(self, number: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while "ready." not in self.log(number).read_text(errors="replace"):
            if self.processes[number].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {number} did not start; see {self.log(number)}")
            time.sleep(0.1)

    def sample_memory(self) -> None:
        while not self.stopping.is_set():
            for process in self.processes:
                self.peak_mb = max(self.peak_mb, resident_mb(process.pid))
            time.sleep(MEMORY_SAMPLE_SECONDS)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self.sampler.join()
        everything = [*self.processes, *([self.beat] if self.beat else [])]
        for process in everything:
            process.terminate()
        for process in everything:
            process.wait(timeout=60)
