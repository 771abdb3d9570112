"""Results to render, built by hand: one place for the report's tests to make them."""

from benchmarks.app_load import LoadReport
from benchmarks.results import Results, Run


def load(p99_ms: float, writes_per_second: float = 200.0) -> LoadReport:
    return LoadReport(
        writes=int(writes_per_second * 60),
        seconds=60.0,
        writes_per_second=writes_per_second,
        p50_ms=1.0,
        p99_ms=p99_ms,
        max_ms=p99_ms * 2,
        longest_lock_wait_ms=0.0,
    )


def run(
    label: str,
    p99_ms: float | None,
    alone_ms: float | None,
    throughput: list[tuple[float, float]] | None = None,
) -> Run:
    """A run of 1,000 rows in 1 s; under the app's load unless `p99_ms` is None."""
    return Run(
        label=label,
        method=label,
        table_rows=1000,
        rows=1000,
        seconds=1.0,
        started_at=0.0,
        peak_memory_mb=1.0,
        extrapolated=False,
        correct=True,
        load=load(p99_ms) if p99_ms is not None else None,
        alone=load(alone_ms) if alone_ms is not None else None,
        throughput=throughput or [],
    )


def results(*runs: Run, reference_ms: float = 4.0) -> Results:
    machine = {
        "date": "2026-11-26",
        "cpus": 2,
        "memory_gb": 24,
        "postgresql": "15",
        "shared_buffers": "128MB",
        "python": "3.11",
        "app_load": "200 ORM writes/s",
    }
    return Results(machine, "suite", load(reference_ms), list(runs), [], [])
