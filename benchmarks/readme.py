"""The README's benchmark table, kept between two markers so the suite can rewrite it.

Only the lines between the markers are the suite's; the rest of the README is
written by hand and never touched.
"""

from pathlib import Path

from benchmarks.databases import ROOT
from benchmarks.results import Results, Run

README = ROOT / "README.md"

START = "<!-- benchmark table: written by benchmarks/suite.py -->"
END = "<!-- end of benchmark table -->"


def table(results: Results) -> str:
    """The README's summary: each run against B of its own table, in one run of the suite."""
    ref = results.reference
    lines = [
        f"| run, {results.runs[0].table_rows:,} rows | rows/s | vs B "
        f"| app p99 | alone right before it (reference: {ref.p99_ms:.1f} ms) "
        "| app's longest lock wait | job's lock timeouts |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join([*lines, *(row(run, results) for run in results.runs)])


def row(run: Run, results: Results) -> str:
    b = results.run(" ".join(("B", run.scenario)).strip())
    load = run.load
    return (
        f"| {run.label}: {run.method} | {run.rows_per_second:,.0f} "
        f"| {run.rows_per_second / b.rows_per_second:.2f}x "
        f"| {f'{load.p99_ms:.1f} ms' if load else 'no app load'} "
        f"| {f'{run.alone.p99_ms:.1f} ms' if run.alone else ''} "
        f"| {f'{load.longest_lock_wait_ms:,.0f} ms' if load else ''} "
        f"| {run.lock_timeouts if run.label.startswith('S') else ''} |"
    )


def updated(text: str, results: Results) -> str:
    """`text` with the table between the markers replaced; unchanged if it has none."""
    if START not in text or END not in text:
        return text
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(results)}\n{END}{tail}"


def update(results: Results, readme: Path = README) -> None:
    """Rewrite the README only if its table changes, so a rerender leaves it alone."""
    text = readme.read_text()
    new = updated(text, results)
    if new != text:
        readme.write_text(new)
