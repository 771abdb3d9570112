"""The suite's report: results.md, results.json and the plots, written from one Results.

Render them again from a results.json, without running the benchmarks again
(after a change to a table or a plot):

    .venv/bin/python -m benchmarks.report docs/benchmarks/results.json
    .venv/bin/python -m benchmarks.report docs/benchmarks/results.json --no-readme

The files go beside the JSON. Results in docs/benchmarks are the ones the
README shows, so their table in the README is rewritten too (only if it
changes), unless `--no-readme`.
"""

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks import markdown, plots, readme, targets
from benchmarks.databases import ROOT
from benchmarks.results import Results

# Where the suite writes by default, and the results the README's table shows.
OUT = ROOT / "docs" / "benchmarks"


def document(results: Results) -> dict[str, Any]:
    """results.json: the measurements, then the targets checked against them."""
    return {**results.as_dict(), "targets": [t.as_dict() for t in targets.check(results)]}


def write(results: Results, out: Path, readme_too: bool = True) -> str:
    """Write every file of the report into `out`; return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown.page(results)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(document(results), indent=2) + "\n")
    plots.throughput_and_latency(results, out / "throughput-and-latency.png")
    plots.pacing_frontier(results, out / "pacing-frontier.png")
    if readme_too and out.resolve() == OUT.resolve():
        readme.update(results)
    return text


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results.json written by the suite")
    parser.add_argument(
        "--no-readme",
        dest="readme",
        action="store_false",
        help="leave the README's table as it is",
    )
    return parser.parse_args()


def main() -> None:
    options = arguments()
    results = Results.from_dict(json.loads(options.results.read_text()))
    print(write(results, options.results.parent, readme_too=options.readme))


if __name__ == "__main__":
    main()
