"""The suite's report weighs each run's app p99 against the app alone right before it."""

from benchmarks.app_load import LoadReport
from benchmarks.report import Results, from_dict, markdown, readme_table
from benchmarks.suite import Run


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


def run(label: str, p99_ms: float, alone_ms: float | None) -> Run:
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
        load=load(p99_ms),
        alone=load(alone_ms) if alone_ms is not None else None,
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


def p99_target(found: Results, label: str) -> tuple[str, str, bool]:
    return next(t for t in found.targets() if t[0] == f"app p99 during {label} ≤ 2x the app alone")


def test_a_run_is_judged_against_the_app_alone_right_before_it() -> None:
    found = results(run("A", 5, 5), run("B", 5, 5), run("S2", 15.0, 10.0), reference_ms=5.0)
    _, measured, met = p99_target(found, "S2")
    assert met, measured  # 1.5x the window before it, though 3x the reference
    assert measured.startswith("1.50x")
    assert "3.00x the reference" in measured


def test_a_quiet_window_before_a_run_does_not_hide_its_cost() -> None:
    found = results(run("A", 5, 5), run("B", 5, 5), run("S2", 9.0, 4.0), reference_ms=8.0)
    assert not p99_target(found, "S2")[2]


def test_results_without_windows_fall_back_to_the_reference() -> None:
    found = results(run("A", 5, None), run("B", 5, None), run("S2", 9.0, None), reference_ms=4.0)
    assert found.alone(found.run("S2")).p99_ms == 4.0
    assert not p99_target(found, "S2")[2]


def test_the_window_survives_a_round_trip_through_json() -> None:
    found = results(run("A", 5, 5), run("B", 5, None), run("S2", 9.0, 6.0))
    again = from_dict(found.as_dict())
    assert again.run("S2").alone == load(6.0)
    assert again.run("B").alone is None
    assert "| 6.0 ms |" in readme_table(again)
    assert "| 1.50x | 2.25x |" in markdown(again)  # S2 against its window, then the reference
