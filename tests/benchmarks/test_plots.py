"""The throughput-and-latency plot: every run shows, one colour per approach, one panel per table."""

from pathlib import Path

from benchmarks import plots
from tests.benchmarks.builders import results, run


def test_a_run_that_reported_no_progress_is_drawn_at_its_average() -> None:
    one_statement = run("B gap", None, None)
    assert plots.averaged(one_statement)
    assert plots.throughput(one_statement) == [(0.0, 1000.0), (1.0, 1000.0)]


def test_a_run_that_reported_progress_is_drawn_as_it_went() -> None:
    points = [(0.5, 900.0), (1.5, 1100.0), (2.5, 1000.0)]
    worked = run("S2 gap", None, None, throughput=points)
    assert not plots.averaged(worked)
    assert plots.throughput(worked) == points


def test_runs_are_grouped_by_their_table_in_the_order_they_ran() -> None:
    runs = [run("B", 5, 5), run("S2", 5, 5), run("B skewed", None, None), run("S2 gap", None, None)]
    groups = plots.by_scenario(runs)
    assert list(groups) == ["", "skewed", "gap"]
    assert [r.label for r in groups[""]] == ["B", "S2"]


def test_an_approach_keeps_its_colour_on_every_table() -> None:
    colour = plots.colours([run("B", 5, 5), run("S2", 5, 5), run("S2 skewed", None, None)])
    assert colour == {"B": "C0", "S2": "C1"}


def test_the_plot_renders_from_results_alone(tmp_path: Path) -> None:
    found = results(
        run("A", 50.0, 5.0, throughput=[(0.0, 10.0), (1.0, 12.0), (2.0, 11.0)]),
        run("B", 9.0, 5.0),
        run("S2", 6.0, 5.0, throughput=[(0.5, 900.0), (1.5, 1100.0), (2.5, 1000.0)]),
        run("B uuid", None, None),
    )
    path = tmp_path / "throughput-and-latency.png"
    plots.throughput_and_latency(found, path)
    assert path.read_bytes().startswith(b"\x89PNG")
