"""The suite's report weighs each run's app p99 against the app alone right before it."""

from benchmarks import markdown, readme, targets
from benchmarks.results import Results, Run
from tests.benchmarks.builders import load, results, run


def p99_target(found: Results, label: str) -> targets.Target:
    wanted = f"app p99 during {label} ≤ 2x the app alone"
    return next(t for t in targets.check(found) if t.target == wanted)


def test_a_run_is_judged_against_the_app_alone_right_before_it() -> None:
    found = results(run("A", 5, 5), run("B", 5, 5), run("S2", 15.0, 10.0), reference_ms=5.0)
    target = p99_target(found, "S2")
    assert target.met, target.measured  # 1.5x the window before it, though 3x the reference
    assert target.measured.startswith("1.50x")
    assert "3.00x the reference" in target.measured


def test_a_quiet_window_before_a_run_does_not_hide_its_cost() -> None:
    found = results(run("A", 5, 5), run("B", 5, 5), run("S2", 9.0, 4.0), reference_ms=8.0)
    assert not p99_target(found, "S2").met


def test_results_without_windows_fall_back_to_the_reference() -> None:
    found = results(run("A", 5, None), run("B", 5, None), run("S2", 9.0, None), reference_ms=4.0)
    assert found.alone(found.run("S2")).p99_ms == 4.0
    assert not p99_target(found, "S2").met


def test_the_window_survives_a_round_trip_through_json() -> None:
    found = results(run("A", 5, 5), run("B", 5, None), run("S2", 9.0, 6.0))
    again = Results.from_dict(found.as_dict())
    assert again.run("S2").alone == load(6.0)
    assert again.run("B").alone is None
    assert "| 6.0 ms |" in readme.table(again)
    assert "| 1.50x | 2.25x |" in markdown.page(again)  # S2 against its window, then the reference


def timed(label: str, seconds: float) -> Run:
    """1,000 rows in `seconds`, with no app load."""
    made = run(label, None, None)
    made.seconds = seconds
    return made


def test_each_cost_shape_is_judged_against_its_own_b_and_the_cheap_one_against_p() -> None:
    found = results(
        run("A", 5, 5),
        run("B", 5, 5),
        run("S2", 5, 5),
        timed("B hostile", 1.0),
        timed("S1 hostile", 1.25),  # 0.80x: short of 0.85x
        timed("S2 hostile", 0.5),  # 2.00x
        timed("B cheap", 1.0),
        timed("S1 cheap", 1.0),
        timed("S2 cheap", 0.75),  # 1.33x B, 2.67x P
        timed("P cheap", 2.0),
    )
    judged = {t.target: (t.measured, t.met) for t in targets.check(found)}
    assert judged["S1 rows/s ≥ 0.85x B, hostile"] == ("0.80x", False)
    assert judged["S2 rows/s ≥ 1.3x B, hostile"] == ("2.00x", True)
    assert judged["S1 rows/s ≥ 0.85x B, cheap"] == ("1.00x", True)
    assert judged["S2 rows/s ≥ 1.3x B, cheap"] == ("1.33x", True)
    assert judged["S2 rows/s ≥ 2.0x P, cheap"] == ("2.67x", True)
    assert "S2 rows/s ≥ 2.0x P, hostile" not in judged
