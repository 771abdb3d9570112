"""Where health-aware pacing settles at several latency budgets, under the app's load.

On one seeded table, in one run: the app load alone (the reference; each run
is also weighed against the load alone on its copy right before it), B (one
set-based pass, what rows/s are weighed against), S1 and S2 unpaced, and S2
paced at each `--ratios` latency budget (`--max-latency-ratio`); each point is
rows/s against the app's p99, the frontier a budget buys. With
`--pauses`, S1 and S2 also run unpaced with each fixed pause between batches
(`--pause-ms`): what slowing down by hand buys. `--kind plain` puts a
plain-SQL app under the runs instead of the ORM one (app_load.py).

    python -m benchmarks.pacing_frontier --rows 1000000 --ratios 2,1.5,1.25
    python -m benchmarks.pacing_frontier --rows 1000000 --kind plain --ratios 2 --pauses 100,250
"""

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from backfill.management.arguments import positive_int
from benchmarks.databases import ROOT, drop, manage
from benchmarks.results import Run
from benchmarks.runner import REFERENCE_SECONDS, measure_all, reference
from benchmarks.scenarios import Measure, job_run, one_pass, pace_of, service
from benchmarks.templates import Template, seed
from benchmarks.workers import BROKER_URL, Workers

T = TypeVar("T")

LOGS = ROOT / "benchmarks" / "logs" / "frontier"


def paced(template: Template, label: str, ratio: float) -> Measure:
    def run(db: str) -> Run:
        with Workers(db, 2, LOGS / label) as pool:
            manage(
                db,
                *("backfill", "run", "admin_groups", "--concurrency=2", "--pace=auto"),
                f"--max-latency-ratio={ratio:g}",
                quiet=True,
                REDIS_URL=BROKER_URL,
            )
        result = job_run(db, "admin_groups", label, template.rows, pool.peak_mb)
        result.pace = pace_of(db)
        return result

    return run


def budget(text: str) -> float:
    """A latency budget: a ratio to the baseline, above 1 (0 would mean no budget)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 < value < math.inf:
        raise argparse.ArgumentTypeError(f"a latency budget is a ratio above 1, got {text!r}")
    return value


def numbers(parse: Callable[[str], T]) -> Callable[[str], list[T]]:
    """A comma-separated list of at least one item, each read by `parse`."""

    def listed(text: str) -> list[T]:
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"a comma-separated list, got {text!r}")
        return [parse(item) for item in items]

    listed.__name__ = f"list of {parse.__name__}"
    return listed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive_int, default=1_000_000)
    parser.add_argument("--rate", type=positive_int, default=200)
    parser.add_argument("--ratios", type=numbers(budget), default=[2.0, 1.5, 1.25])
    parser.add_argument(
        "--pauses", type=numbers(positive_int), default=[], help="ms between batches (none)"
    )
    parser.add_argument("--kind", choices=["orm", "plain"], default="orm", help="the app load")
    options = parser.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)
    template = seed(options.rows)
    reference_load = reference(template, REFERENCE_SECONDS, LOGS, options.rate, options.kind)
    measures = {
        "B": one_pass(template, "B", "set-based", 0),
        "S1": service(template, "S1", 1, LOGS),
        "S2": service(template, "S2", 2, LOGS),
    }
    for pause in options.pauses:
        for workers in (1, 2):
            label = f"S{workers}p{pause}"
            measures[label] = service(template, label, workers, LOGS, pause_ms=pause)
    for ratio in options.ratios:
        measures[f"S2auto x{ratio:g}"] = paced(template, f"S2auto-{ratio:g}", ratio)
    runs = measure_all(template, measures, LOGS, options.rate, kind=options.kind)
    drop(template.db)
    b = next(run for run in runs if run.label == "B")
    print(
        f"\nreference ({options.kind} app load) p99 {reference_load.p99_ms:.2f} ms, "
        f"{reference_load.writes_per_second:.0f} writes/s"
    )
    print(
        "| run | rows/s | vs B | app p99 vs alone before it | vs the reference "
        "| app writes kept | throttled | batches by limit |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        assert run.load is not None
        alone = run.alone or reference_load
        pace = run.pace or {}
        print(
            f"| {run.label} | {run.rows_per_second:,.0f} "
            f"| {run.rows_per_second / b.rows_per_second:.2f}x "
            f"| {run.load.p99_ms / alone.p99_ms:.2f}x ({alone.p99_ms:.2f} ms) "
            f"| {run.load.p99_ms / reference_load.p99_ms:.2f}x "
            f"| {run.load.writes_per_second / alone.writes_per_second:.0%} "
            f"| {pace.get('throttled_seconds', '')} | {pace.get('batches_by_limit', '')} |"
        )


if __name__ == "__main__":
    main()
