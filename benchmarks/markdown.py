"""results.md: the suite's results as Markdown tables, one section per question asked.

Pure text from a Results, so the page can be written again from results.json.
"""

from benchmarks import targets
from benchmarks.app_load import LoadReport
from benchmarks.results import Results, Run

GAP_MODES = {"queue": "in PostgreSQL's lock queue", "gap": "for a gap (default)"}


def page(results: Results) -> str:
    """The whole of results.md."""
    lines = [
        *header(results),
        *backfill(results),
        *frontier(results),
        *contract(results),
        *schema_gaps(results),
        *scaling(results),
        *checked(results),
    ]
    return "\n".join(lines) + "\n"


def seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 60:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def load_cells(load: LoadReport | None) -> str:
    if load is None:
        return "| | | | |"
    return (
        f"| {load.writes_per_second:,.0f} | {load.p50_ms:.1f} / {load.p99_ms:.1f} / "
        f"{load.max_ms:,.0f} | {load.longest_lock_wait_ms:,.0f} |"
    )


def header(results: Results) -> list[str]:
    machine = results.machine
    return [
        "# Benchmark results",
        "",
        f"`{results.command}`",
        "",
        f"{machine['date']}: {machine['cpus']} cores, {machine['memory_gb']} GB, "
        f"PostgreSQL {machine['postgresql']} (shared_buffers {machine['shared_buffers']}), "
        f"Python {machine['python']}. The app load: {machine['app_load']}.",
    ]


def backfill(results: Results) -> list[str]:
    return [
        "",
        "## Backfill of the whole table, under the app's load",
        "",
        "| run | method | rows | time | rows/s | peak memory | verified | job's lock timeouts "
        "| app writes/s | app p50 / p99 / max ms | longest lock wait ms | app p99 alone before it |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| ref | the app load alone | | | | | | | "
        + load_cells(results.reference).removeprefix("| ")
        + " |",
        *(backfill_row(run) for run in results.runs),
    ]


def backfill_row(run: Run) -> str:
    rows = f"{run.rows:,}" + (f" of {run.table_rows:,}" if run.extrapolated else "")
    time_cell = seconds(run.seconds) + (
        f" (whole table ≈ {seconds(run.table_seconds)}, extrapolated)" if run.extrapolated else ""
    )
    return (
        f"| {run.label} | {run.method} | {rows} | {time_cell} | {run.rows_per_second:,.0f} "
        f"| {run.peak_memory_mb:.0f} MB | {verdict(run.correct)} "
        f"| {run.lock_timeouts if run.label.startswith('S') else ''} "
        + load_cells(run.load)
        + (f" {run.alone.p99_ms:.1f} ms |" if run.alone else " |")
    )


def frontier(results: Results) -> list[str]:
    """Rows/s against the app's p99, for every service run under the app's load:
    the fixed choices (S1, S2, S2p, S4) and where pacing settled by itself (S2auto)."""
    return [
        "",
        "## Pacing: rows/s against the app's p99",
        "",
        "| run | rows/s | vs B | app p99 vs alone before it | vs the reference "
        "| app writes kept | pacing |",
        "|---|---|---|---|---|---|---|",
        *(
            frontier_row(run, results)
            for run in sorted(results.under_load(), key=lambda r: r.rows_per_second)
        ),
    ]


def frontier_row(run: Run, results: Results) -> str:
    assert run.load is not None
    alone = results.alone(run)
    return (
        f"| {run.label} | {run.rows_per_second:,.0f} "
        f"| {run.rows_per_second / results.run('B').rows_per_second:.2f}x "
        f"| {run.load.p99_ms / alone.p99_ms:.2f}x "
        f"| {run.load.p99_ms / results.reference.p99_ms:.2f}x "
        f"| {run.load.writes_per_second / alone.writes_per_second:.0%} "
        f"| {pacing(run)} |"
    )


def pacing(run: Run) -> str:
    """What pacing did, by the signal that limited each batch; "off" for a fixed choice."""
    if not run.pace:
        return "off"
    pauses = run.pace.get("mean_pause_ms_by_limit", {})
    limits = ", ".join(
        f"{name.replace('_', ' ')}: {count} batches (mean pause {pauses[name]:.0f} ms)"
        for name, count in run.pace.get("batches_by_limit", {}).items()
    )
    return f"{run.pace.get('throttled_seconds', 0)} s throttled; {limits}"


def contract(results: Results) -> list[str]:
    return [
        "",
        "## Contract step: longest ACCESS EXCLUSIVE hold",
        "",
        "| rows | plain SET NOT NULL | EnforceNotNull | its validation scan (no exclusive lock) |",
        "|---|---|---|---|",
        *(
            f"| {c.rows:,} | {c.plain_set_not_null_ms:,.1f} ms "
            f"| {c.enforce_not_null_longest_exclusive_ms:.1f} ms "
            f"| {c.enforce_not_null_validate_ms:,.1f} ms |"
            for c in results.contracts
        ),
    ]


def schema_gaps(results: Results) -> list[str]:
    return [
        "",
        "## Schema steps behind a long transaction, under the app's load",
        "",
        "| step | how it waits | transaction held | applied in | app writes | app p99 "
        "| app's longest write |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {g.step} | {GAP_MODES.get(g.mode, g.mode)} | {g.hold_seconds:.0f} s "
            f"| {seconds(g.seconds)} | {g.app_writes:,} | {g.app_p99_ms:,.1f} ms "
            f"| {g.app_longest_ms:,.0f} ms |"
            for g in results.schema_gaps
        ),
    ]


def scaling(results: Results) -> list[str]:
    return [
        "",
        "## Scaling: S2 alone",
        "",
        "| rows | time | rows/s | peak worker memory | verified |",
        "|---|---|---|---|---|",
        *(
            f"| {run.table_rows:,} | {seconds(run.seconds)} | {run.rows_per_second:,.0f} "
            f"| {run.peak_memory_mb:.0f} MB | {verdict(run.correct)} |"
            for run in results.scaling
        ),
    ]


def checked(results: Results) -> list[str]:
    return [
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *(f"| {t.target} | {t.measured} | {verdict(t.met)} |" for t in targets.check(results)),
    ]
