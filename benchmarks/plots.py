"""The suite's plots: rows/s and the app's p99 over each run, and where pacing settled.

One panel per question, so no panel carries more than one table's runs: the
runs under the app's load (their rows/s, then the app's p99), then each other
table's runs. Every approach keeps one colour in every panel, and one legend,
outside the data, names them all.

Drawn with matplotlib's object API rather than pyplot: no global figure state
and no display, so the plots render again from results.json anywhere.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Final

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import StrMethodFormatter

from benchmarks import targets
from benchmarks.results import Results, Run

DPI = 110
THOUSANDS = StrMethodFormatter("{x:,.0f}")
# The app alone, what every run's p99 is read against.
REFERENCE_COLOUR = "grey"
REFERENCE_STYLE: Final = "--"


def averaged(run: Run) -> bool:
    """Whether the run reported no progress between its start and its end (one
    statement, as B): its rows/s over time can only be its average."""
    return len(run.throughput) <= 2


def throughput(run: Run) -> list[tuple[float, float]]:
    """Rows/s over the run; one with no progress points at all is drawn at its average
    over its whole time, so it still shows."""
    if run.throughput:
        return run.throughput
    return [(0.0, run.rows_per_second), (run.seconds, run.rows_per_second)]


def by_scenario(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """Runs grouped by the table they ran on, in the order the suite ran them."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.scenario, []).append(run)
    return groups


def colours(runs: Iterable[Run]) -> dict[str, str]:
    """One colour per approach, so S2 on the skewed table is the S2 of the main one."""
    approaches = dict.fromkeys(run.approach for run in runs)
    return {approach: f"C{i}" for i, approach in enumerate(approaches)}


def legend(results: Results, colour: dict[str, str]) -> list[Line2D]:
    """Each approach once, described by its first run (the main table's)."""
    lines = [Line2D([], [], color=c, label=describe(a, results.runs)) for a, c in colour.items()]
    reference = f"the app alone (reference): p99 {results.reference.p99_ms:.1f} ms"
    return [
        *lines,
        Line2D([], [], color=REFERENCE_COLOUR, linestyle=REFERENCE_STYLE, label=reference),
    ]


def describe(approach: str, runs: list[Run]) -> str:
    """The legend's line for `approach`: its first run's method, and whether it is an average."""
    own = [run for run in runs if run.approach == approach]
    average = " (rows/s: its average)" if all(averaged(run) for run in own) else ""
    return f"{approach}: {own[0].method}{average}"


def draw(axes: Axes, points: list[tuple[float, float]], colour: str) -> None:
    if points:
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, color=colour)


def rows_panel(axes: Axes, runs: list[Run], colour: dict[str, str], title: str) -> None:
    for run in runs:
        draw(axes, throughput(run), colour[run.approach])
    axes.set_title(title, fontsize="medium")
    axes.set_ylabel("rows filled per second")
    axes.yaxis.set_major_formatter(THOUSANDS)
    axes.set_ylim(bottom=0)


def latency_panel(axes: Axes, runs: list[Run], colour: dict[str, str], results: Results) -> None:
    for run in runs:
        draw(axes, run.app_p99, colour[run.approach])
    axes.axhline(results.reference.p99_ms, color=REFERENCE_COLOUR, linestyle=REFERENCE_STYLE)
    axes.set_yscale("log")
    axes.set_title(
        "The app's write p99 in each second of those runs; a write still waiting counts its age",
        fontsize="medium",
    )
    axes.set_ylabel("ms (log)")
    axes.set_xlabel("seconds since the run began")


def throughput_and_latency(results: Results, path: Path) -> None:
    """The runs under the app's load (rows/s, then the app's p99) over the full width,
    then one panel of rows/s per other table along the bottom."""
    groups = by_scenario(results.runs)
    loaded = groups.pop("", [])
    colour = colours(results.runs)
    figure = Figure(figsize=(11, 12), layout="constrained")
    grid = figure.add_gridspec(3, max(len(groups), 1), height_ratios=(3, 3, 2))
    top = figure.add_subplot(grid[0, :])
    title = (
        f"{results.runs[0].table_rows:,} organizations, "
        f"the app's load running throughout ({results.machine['app_load']})"
    )
    rows_panel(top, loaded, colour, title)
    latency_panel(figure.add_subplot(grid[1, :], sharex=top), loaded, colour, results)
    for column, (scenario, runs) in enumerate(groups.items()):
        axes = figure.add_subplot(grid[2, column])
        load = "" if any(run.load for run in runs) else ", no app load"
        rows_panel(axes, runs, colour, f"The {scenario} table{load}")
        axes.set_xlabel("seconds since the run began")
        if column:
            axes.set_ylabel("")
    figure.legend(handles=legend(results, colour), loc="outside upper center", ncols=2)
    figure.savefig(path, dpi=DPI)


def pacing_frontier(results: Results, path: Path) -> None:
    """Each service run under the app's load as a point: rows/s against app p99."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for run in results.under_load():
        assert run.load is not None
        x, y = run.load.p99_ms / results.alone(run).p99_ms, run.rows_per_second
        axes.scatter([x], [y], color="tab:red" if run.label == "S2auto" else "tab:blue")
        axes.annotate(run.label, (x, y), textcoords="offset points", xytext=(6, 4))
    axes.axvline(
        targets.P99_OVER_ALONE, color="grey", linestyle="--", label="p99 budget (2x alone)"
    )
    b = results.run("B").rows_per_second
    axes.axhline(targets.S2AUTO_OVER_B * b, color="grey", linestyle=":", label="0.7x B")
    axes.set_xlabel("app write p99 during the run, against the app alone right before it")
    axes.set_ylabel("rows filled per second")
    axes.set_title("Where pacing settled (S2auto) among fixed choices")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
