"""A stand-in for the live app: single-row writes at a fixed rate, timed.

Runs in its own process so that it competes for locks exactly as the app
would, and reports throughput and latency percentiles.
"""

import multiprocessing
import random
import statistics
import time
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Event

import psycopg


@dataclass(frozen=True)
class LoadReport:
    writes: int
    seconds: float
    writes_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def run_load(
    conninfo: str,
    table: str,
    rate: float,
    stop: Event,
    results: "multiprocessing.Queue[list[float]]",
) -> None:
    """Update a random existing row `rate` times a second until `stop` is set."""
    latencies: list[float] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        low, high = conn.execute(f'SELECT min(id), max(id) FROM "{table}"').fetchone() or (1, 1)
        interval = 1.0 / rate
        next_at = time.monotonic()
        while not stop.is_set():
            row = random.randint(low or 1, high or 1)
            started = time.monotonic()
            conn.execute(f'UPDATE "{table}" SET updated_at = now() WHERE id = %s', [row])
            latencies.append(time.monotonic() - started)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    results.put(latencies)


def summarize(latencies: list[float], seconds: float) -> LoadReport:
    ordered = sorted(latencies) or [0.0]
    return LoadReport(
        writes=len(latencies),
        seconds=round(seconds, 2),
        writes_per_second=round(len(latencies) / seconds, 1) if seconds else 0.0,
        p50_ms=round(statistics.median(ordered) * 1000, 2),
        p99_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        max_ms=round(ordered[-1] * 1000, 2),
    )


class AppLoad:
    """Context manager: the load runs in a child process for the block's duration."""

    def __init__(
        self, conninfo: str, table: str = "organizations_organization", rate: float = 200.0
    ) -> None:
        self.args = (conninfo, table, rate)
        self.stop = multiprocessing.Event()
        self.results: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
        self.report: LoadReport | None = None

    def __enter__(self) -> "AppLoad":
        self.started = time.monotonic()
        self.process = multiprocessing.Process(
            target=run_load, args=(*self.args, self.stop, self.results)
        )
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        latencies = self.results.get(timeout=60)
        self.process.join(timeout=10)
        self.report = summarize(latencies, time.monotonic() - self.started)
