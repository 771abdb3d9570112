"""The suite's results: targets checked, a Markdown table, JSON and one plot."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.app_load import LoadReport
from benchmarks.contract_lock import ContractTimes
from benchmarks.schema_gaps import GapRun

if TYPE_CHECKING:
    from benchmarks.suite import Run

# The targets; ratios are between runs of the same suite, on the same machine.
S2_OVER_B = 1.5
# Health-aware pacing at its defaults must keep this much of the set-based pass.
S2AUTO_OVER_B = 0.7
S2_OVER_B_SKEWED = 1.2
S2_OVER_A = 20.0
P99_OVER_REFERENCE = 2.0
THROUGHPUT_KEPT = 0.95
LOCK_WAIT_MS = 250.0
EXCLUSIVE_MS = 50.0
GAP_STALL_MS = 150.0
FLAT = 0.8  # speed kept within 20% between the two largest sizes; memory likewise


@dataclass
class Results:
    machine: dict[str, Any]
    command: str
    reference: LoadReport
    runs: list["Run"]
    scaling: list["Run"]
    contracts: list[ContractTimes]
    schema_gaps: list[GapRun] = field(default_factory=list)

    def run(self, label: str) -> "Run":
        return next(r for r in self.runs if r.label == label)

    def alone(self, run: "Run") -> LoadReport:
        """What `run`'s app load is weighed against: the app alone right before it
        (results from before those windows were taken: the reference)."""
        return run.alone or self.reference

    def targets(self) -> list[tuple[str, str, bool]]:
        """(target, what was measured, met)."""
        a, b, s2 = self.run("A"), self.run("B"), self.run("S2")
        checks = [
            ratio("S2 rows/s ≥ 1.5x B", s2.rows_per_second / b.rows_per_second, S2_OVER_B),
            ratio("S2 rows/s ≥ 20x A", s2.rows_per_second / a.rows_per_second, S2_OVER_A),
        ]
        checks.extend(self.skewed_targets())
        if any(r.label == "S2auto" for r in self.runs):
            auto = self.run("S2auto")
            checks.append(
                ratio(
                    "S2auto rows/s ≥ 0.7x B",
                    auto.rows_per_second / b.rows_per_second,
                    S2AUTO_OVER_B,
                )
            )
        for run in (r for r in self.runs if r.label.startswith("S") and r.load):
            checks.extend(self.app_targets(run))
        for times in self.contracts:
            held = times.enforce_not_null_longest_exclusive_ms
            checks.append(
                (
                    f"EnforceNotNull holds ACCESS EXCLUSIVE < 50 ms at {times.rows:,} rows",
                    f"{held:.1f} ms (plain SET NOT NULL {times.plain_set_not_null_ms:.1f} ms)",
                    held < EXCLUSIVE_MS,
                )
            )
        checks.extend(self.scaling_targets())
        for gap in (g for g in self.schema_gaps if g.mode == "gap"):
            checks.append(
                (
                    f"{gap.step} behind a {gap.hold_seconds:.0f} s transaction: "
                    f"no app write waits ≥ {GAP_STALL_MS:.0f} ms",
                    f"longest {gap.app_longest_ms:,.0f} ms, applied in {gap.seconds:.1f} s",
                    gap.app_longest_ms < GAP_STALL_MS,
                )
            )
        checks.append(
            (
                "every run verified",
                ", ".join(r.label for r in self.all_runs() if not r.correct) or "all correct",
                all(r.correct for r in self.all_runs()),
            )
        )
        return checks

    def skewed_targets(self) -> list[tuple[str, str, bool]]:
        """On the skewed table the job runs alone: every lock timeout is its own."""
        skewed = {r.label.split()[0]: r for r in self.runs if r.label.endswith(" skewed")}
        if "B" not in skewed or "S2" not in skewed:
            return []
        speed = skewed["S2"].rows_per_second / skewed["B"].rows_per_second
        services = [r for label, r in skewed.items() if label.startswith("S")]
        timeouts = sum(r.lock_timeouts for r in services)
        return [
            ratio("S2 rows/s ≥ 1.2x B on the skewed table", speed, S2_OVER_B_SKEWED),
            (
                "no lock timeouts between a job's own slices (skewed, no app load)",
                ", ".join(f"{r.label}: {r.lock_timeouts}" for r in services),
                timeouts == 0,
            ),
        ]

    def app_targets(self, run: "Run") -> list[tuple[str, str, bool]]:
        assert run.load is not None
        alone = self.alone(run)
        kept = run.load.writes_per_second / alone.writes_per_second
        p99 = run.load.p99_ms / alone.p99_ms
        return [
            (
                f"app throughput kept during {run.label}",
                f"{kept:.0%} of the app alone",
                kept >= THROUGHPUT_KEPT,
            ),
            (
                f"app p99 during {run.label} ≤ 2x the app alone",
                f"{p99:.2f}x ({run.load.p99_ms:.1f} against {alone.p99_ms:.1f} ms; "
                f"{run.load.p99_ms / self.reference.p99_ms:.2f}x the reference)",
                p99 <= P99_OVER_REFERENCE,
            ),
            (
                f"no app write waits > 250 ms for a lock during {run.label}",
                f"longest {run.load.longest_lock_wait_ms:.0f} ms",
                run.load.longest_lock_wait_ms <= LOCK_WAIT_MS,
            ),
        ]

    def scaling_targets(self) -> list[tuple[str, str, bool]]:
        """The two largest sizes: a small job is dominated by fixed costs (start, last pass)."""
        if len(self.scaling) < 2:
            return []
        smaller, larger = sorted(self.scaling, key=lambda r: r.table_rows)[-2:]
        sizes = f"{smaller.table_rows:,} to {larger.table_rows:,} rows"
        speed = larger.rows_per_second / smaller.rows_per_second
        memory = larger.peak_memory_mb / smaller.peak_memory_mb
        return [
            (
                f"S2 rows/s flat from {sizes} (at least 80%)",
                f"{smaller.rows_per_second:,.0f} to {larger.rows_per_second:,.0f} ({speed:.0%})",
                speed >= FLAT,
            ),
            (
                f"worker memory does not grow from {sizes} (at most +20%)",
                f"{smaller.peak_memory_mb:.0f} to {larger.peak_memory_mb:.0f} MB",
                memory <= 1 / FLAT,
            ),
        ]

    def all_runs(self) -> list["Run"]:
        return [*self.runs, *self.scaling]

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "command": self.command,
            "reference_load": self.reference.as_dict(),
            "runs": [r.as_dict() for r in self.runs],
            "scaling": [r.as_dict() for r in self.scaling],
            "contract": [c.as_dict() for c in self.contracts],
            "schema_gaps": [g.as_dict() for g in self.schema_gaps],
            "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in self.targets()],
        }


def from_dict(data: dict[str, Any]) -> Results:
    """Results as `as_dict` wrote them, to render them again without rerunning."""
    from benchmarks.suite import Run

    def run(fields: dict[str, Any]) -> Run:
        fields = {k: v for k, v in fields.items() if k not in ("rows_per_second", "table_seconds")}
        fields["load"] = LoadReport(**fields["load"]) if fields["load"] else None
        fields["alone"] = LoadReport(**fields["alone"]) if fields.get("alone") else None
        fields["throughput"] = [tuple(p) for p in fields["throughput"]]
        fields["app_p99"] = [tuple(p) for p in fields["app_p99"]]
        return Run(**fields)

    return Results(
        machine=data["machine"],
        command=data["command"],
        reference=LoadReport(**data["reference_load"]),
        runs=[run(r) for r in data["runs"]],
        scaling=[run(r) for r in data["scaling"]],
        contracts=[
            ContractTimes(**{**c, "steps": [tuple(s) for s in c["steps"]]})
            for c in data["contract"]
        ],
        schema_gaps=[GapRun(**g) for g in data.get("schema_gaps", [])],
    )


def ratio(name: str, value: float, limit: float, below: bool = False) -> tuple[str, str, bool]:
    return name, f"{value:.2f}x", value <= limit if below else value >= limit


def seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 60:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def load_cells(load: LoadReport | None) -> str:
    if load is None:
        return "| | | | |"
    return (
        f"| {load.writes_per_second:,.0f} | {load.p50_ms:.1f} / {load.p99_ms:.1f} / "
        f"{load.max_ms:,.0f} | {load.longest_lock_wait_ms:,.0f} |"
    )


def markdown(results: Results) -> str:
    machine = results.machine
    lines = [
        "# Benchmark results",
        "",
        f"`{results.command}`",
        "",
        f"{machine['date']}: {machine['cpus']} cores, {machine['memory_gb']} GB, "
        f"PostgreSQL {machine['postgresql']} (shared_buffers {machine['shared_buffers']}), "
        f"Python {machine['python']}. The app load: {machine['app_load']}.",
        "",
        "## Backfill of the whole table, under the app's load",
        "",
        "| run | method | rows | time | rows/s | peak memory | verified | job's lock timeouts "
        "| app writes/s | app p50 / p99 / max ms | longest lock wait ms | app p99 alone before it |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| ref | the app load alone | | | | | | | "
        + load_cells(results.reference).removeprefix("| ")
        + " |",
    ]
    for run in results.runs:
        rows = f"{run.rows:,}" + (f" of {run.table_rows:,}" if run.extrapolated else "")
        time_cell = seconds(run.seconds) + (
            f" (whole table ≈ {seconds(run.table_seconds)}, extrapolated)"
            if run.extrapolated
            else ""
        )
        lines.append(
            f"| {run.label} | {run.method} | {rows} | {time_cell} | {run.rows_per_second:,.0f} "
            f"| {run.peak_memory_mb:.0f} MB | {'yes' if run.correct else 'NO'} "
            f"| {run.lock_timeouts if run.label.startswith('S') else ''} "
            + load_cells(run.load)
            + (f" {run.alone.p99_ms:.1f} ms |" if run.alone else " |")
        )
    lines += frontier(results)
    lines += ["", "## Contract step: longest ACCESS EXCLUSIVE hold", ""]
    lines += [
        "| rows | plain SET NOT NULL | EnforceNotNull | its validation scan (no exclusive lock) |"
    ]
    lines += ["|---|---|---|---|"]
    for c in results.contracts:
        lines.append(
            f"| {c.rows:,} | {c.plain_set_not_null_ms:,.1f} ms "
            f"| {c.enforce_not_null_longest_exclusive_ms:.1f} ms | {c.enforce_not_null_validate_ms:,.1f} ms |"
        )
    lines += ["", "## Schema steps behind a long transaction, under the app's load", ""]
    lines += [
        "| step | how it waits | transaction held | applied in | app writes | app p99 | app's longest write |",
        "|---|---|---|---|---|---|---|",
    ]
    modes = {"queue": "in PostgreSQL's lock queue", "gap": "for a gap (default)"}
    for g in results.schema_gaps:
        lines.append(
            f"| {g.step} | {modes.get(g.mode, g.mode)} | {g.hold_seconds:.0f} s | {seconds(g.seconds)} "
            f"| {g.app_writes:,} | {g.app_p99_ms:,.1f} ms | {g.app_longest_ms:,.0f} ms |"
        )
    lines += [
        "",
        "## Scaling: S2 alone",
        "",
        "| rows | time | rows/s | peak worker memory | verified |",
    ]
    lines += ["|---|---|---|---|---|"]
    for run in results.scaling:
        lines.append(
            f"| {run.table_rows:,} | {seconds(run.seconds)} | {run.rows_per_second:,.0f} "
            f"| {run.peak_memory_mb:.0f} MB | {'yes' if run.correct else 'NO'} |"
        )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'NO'} |" for t, m, ok in results.targets()]
    return "\n".join(lines) + "\n"


def frontier(results: Results) -> list[str]:
    """Rows/s against the app's p99, for every service run under the app's load:
    the fixed choices (S1, S2, S2p, S4) and where pacing settled by itself (S2auto)."""
    b = results.run("B")
    ref = results.reference
    runs = [r for r in results.runs if r.label.startswith("S") and r.load]
    lines = [
        "",
        "## Pacing: rows/s against the app's p99",
        "",
        "| run | rows/s | vs B | app p99 vs alone before it | vs the reference "
        "| app writes kept | pacing |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in sorted(runs, key=lambda r: r.rows_per_second):
        assert run.load is not None
        pace = run.pace or {}
        limits = ", ".join(
            f"{name.replace('_', ' ')}: {count} batches (mean pause {pace['mean_pause_ms_by_limit'][name]:.0f} ms)"
            for name, count in pace.get("batches_by_limit", {}).items()
        )
        pacing = f"{pace.get('throttled_seconds', 0)} s throttled; {limits}" if pace else "off"
        lines.append(
            f"| {run.label} | {run.rows_per_second:,.0f} "
            f"| {run.rows_per_second / b.rows_per_second:.2f}x "
            f"| {run.load.p99_ms / results.alone(run).p99_ms:.2f}x "
            f"| {run.load.p99_ms / ref.p99_ms:.2f}x "
            f"| {run.load.writes_per_second / results.alone(run).writes_per_second:.0%} "
            f"| {pacing} |"
        )
    return lines


def plot(results: Results, path: Path) -> None:
    """Rows per second (top) and the app's p99 (bottom), per second since each run began."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 7))
    for run in results.runs:
        if run.throughput:
            xs, ys = zip(*run.throughput, strict=True)
            top.plot(xs, ys, label=f"{run.label}: {run.method}")
        if run.app_p99:
            xs, ys = zip(*run.app_p99, strict=True)
            bottom.plot(xs, ys, label=run.label)
    bottom.axhline(results.reference.p99_ms, color="grey", linestyle="--", label="reference p99")
    top.set_ylabel("rows filled per second")
    top.set_title(f"{results.runs[0].table_rows:,} organizations, app load running throughout")
    top.legend(fontsize="small")
    bottom.set_yscale("log")
    bottom.set_ylabel("app write p99 per second (ms, log)\na write still waiting counts its age")
    bottom.set_xlabel("seconds since the run began")
    bottom.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_frontier(results: Results, path: Path) -> None:
    """Each service run under the app's load as a point: rows/s against app p99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for run in (r for r in results.runs if r.label.startswith("S") and r.load):
        assert run.load is not None
        x, y = run.load.p99_ms / results.alone(run).p99_ms, run.rows_per_second
        axes.scatter([x], [y], color="tab:red" if run.label == "S2auto" else "tab:blue")
        axes.annotate(run.label, (x, y), textcoords="offset points", xytext=(6, 4))
    axes.axvline(P99_OVER_REFERENCE, color="grey", linestyle="--", label="p99 budget (2x alone)")
    b = results.run("B").rows_per_second
    axes.axhline(S2AUTO_OVER_B * b, color="grey", linestyle=":", label="0.7x B")
    axes.set_xlabel("app write p99 during the run, against the app alone right before it")
    axes.set_ylabel("rows filled per second")
    axes.set_title("Where pacing settled (S2auto) among fixed choices")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


README_START = "<!-- benchmark table: written by benchmarks/suite.py -->"
README_END = "<!-- end of benchmark table -->"


def readme_table(results: Results) -> str:
    """The README's summary: each run against B of its own table, in one run of the suite."""
    ref = results.reference
    lines = [
        f"| run, {results.runs[0].table_rows:,} rows | rows/s | vs B "
        f"| app p99 | alone right before it (reference: {ref.p99_ms:.1f} ms) "
        "| app's longest lock wait | job's lock timeouts |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in results.runs:
        table = run.label.partition(" ")[2]
        b = next(r for r in results.runs if r.label == " ".join(("B", table)).strip())
        load = run.load
        lines.append(
            f"| {run.label}: {run.method} | {run.rows_per_second:,.0f} "
            f"| {run.rows_per_second / b.rows_per_second:.2f}x "
            f"| {f'{load.p99_ms:.1f} ms' if load else 'no app load'} "
            f"| {f'{run.alone.p99_ms:.1f} ms' if run.alone else ''} "
            f"| {f'{load.longest_lock_wait_ms:,.0f} ms' if load else ''} "
            f"| {run.lock_timeouts if run.label.startswith('S') else ''} |"
        )
    return "\n".join(lines)


def update_readme(results: Results, readme: Path) -> None:
    """Replace the table between the README's markers, if it has them."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{readme_table(results)}\n{README_END}{tail}")


def write(results: Results, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(results)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results.as_dict(), indent=2) + "\n")
    plot(results, out / "throughput-and-latency.png")
    plot_frontier(results, out / "pacing-frontier.png")
    return text


def main() -> None:
    """Render results.md and the plot again from a results.json."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path, help="a results.json written by the suite")
    path = parser.parse_args().results
    results = from_dict(json.loads(path.read_text()))
    print(write(results, path.parent))
    readme = Path(__file__).resolve().parent.parent / "README.md"
    if path.parent.resolve() == readme.parent / "docs" / "benchmarks":
        update_readme(results, readme)


if __name__ == "__main__":
    main()
