"""The targets the suite's results are checked against, and the check.

Ratios are between runs of the same suite on the same machine: absolute
figures drift with a shared machine's day, ratios within one run do not.
"""

from dataclasses import dataclass

from benchmarks.results import Results, Run

S2_OVER_B = 1.5
# Health-aware pacing at its defaults must keep this much of the set-based pass.
S2AUTO_OVER_B = 0.7
S2_OVER_B_SKEWED = 1.2
# The cost-per-row shapes (benchmarks/cost.py): a hostile table and a cheap
# expression, no app load; on the cheap one against the Django peer too.
S1_OVER_B_COST = 0.85
S2_OVER_B_COST = 1.3
S2_OVER_P = 2.0
S2_OVER_A = 20.0
P99_OVER_ALONE = 2.0
THROUGHPUT_KEPT = 0.95
LOCK_WAIT_MS = 250.0
EXCLUSIVE_MS = 50.0
GAP_STALL_MS = 150.0
FLAT = 0.8  # speed kept within 20% between the two largest sizes; memory likewise


@dataclass(frozen=True)
class Target:
    """One target: what it asks, what was measured, and whether it was met."""

    target: str
    measured: str
    met: bool

    def as_dict(self) -> dict[str, str | bool]:
        return {"target": self.target, "measured": self.measured, "met": self.met}


def ratio(name: str, value: float, limit: float) -> Target:
    return Target(name, f"{value:.2f}x", value >= limit)


def check(results: Results) -> list[Target]:
    """Every target, in the order results.md lists them."""
    return [
        *speed(results),
        *skewed(results),
        *cost(results),
        *paced(results),
        *(t for run in results.under_load() for t in app(run, results)),
        *contract(results),
        *scaling(results),
        *schema_gaps(results),
        verified(results),
    ]


def speed(results: Results) -> list[Target]:
    a, b, s2 = results.run("A"), results.run("B"), results.run("S2")
    return [
        ratio("S2 rows/s ≥ 1.5x B", s2.rows_per_second / b.rows_per_second, S2_OVER_B),
        ratio("S2 rows/s ≥ 20x A", s2.rows_per_second / a.rows_per_second, S2_OVER_A),
    ]


def skewed(results: Results) -> list[Target]:
    """On the skewed table the job runs alone: every lock timeout is its own."""
    runs = {r.approach: r for r in results.runs if r.scenario == "skewed"}
    if "B" not in runs or "S2" not in runs:
        return []
    faster = runs["S2"].rows_per_second / runs["B"].rows_per_second
    services = [r for approach, r in runs.items() if approach.startswith("S")]
    return [
        ratio("S2 rows/s ≥ 1.2x B on the skewed table", faster, S2_OVER_B_SKEWED),
        Target(
            "no lock timeouts between a job's own slices (skewed, no app load)",
            ", ".join(f"{r.label}: {r.lock_timeouts}" for r in services),
            sum(r.lock_timeouts for r in services) == 0,
        ),
    ]


def cost(results: Results) -> list[Target]:
    """Each cost shape's runs against its own B (and the cheap one's against P)."""
    targets = []
    for shape in ("hostile", "cheap"):
        runs = {r.approach: r for r in results.runs if r.scenario == shape}
        if "B" not in runs:
            continue
        b = runs["B"].rows_per_second
        for approach, limit in (("S1", S1_OVER_B_COST), ("S2", S2_OVER_B_COST)):
            if approach in runs:
                value = runs[approach].rows_per_second / b
                targets.append(ratio(f"{approach} rows/s ≥ {limit}x B, {shape}", value, limit))
        if "S2" in runs and "P" in runs:
            value = runs["S2"].rows_per_second / runs["P"].rows_per_second
            targets.append(ratio(f"S2 rows/s ≥ {S2_OVER_P}x P, {shape}", value, S2_OVER_P))
    return targets


def paced(results: Results) -> list[Target]:
    """Results from before health-aware pacing have no S2auto run to check."""
    if not any(r.label == "S2auto" for r in results.runs):
        return []
    auto, b = results.run("S2auto"), results.run("B")
    targets = [
        ratio("S2auto rows/s ≥ 0.7x B", auto.rows_per_second / b.rows_per_second, S2AUTO_OVER_B)
    ]
    labels = {r.label for r in results.runs}
    if {"S2auto plain", "B plain"} <= labels:
        plain = results.run("S2auto plain").rows_per_second / results.run("B plain").rows_per_second
        targets.append(ratio("S2auto rows/s ≥ 0.7x B, plain-SQL app load", plain, S2AUTO_OVER_B))
    return targets


def app(run: Run, results: Results) -> list[Target]:
    """What the app saw during `run`, against the app alone right before it."""
    assert run.load is not None
    load = run.load
    alone = results.alone(run)
    kept = load.writes_per_second / alone.writes_per_second
    p99 = load.p99_ms / alone.p99_ms
    return [
        Target(
            f"app throughput kept during {run.label}",
            f"{kept:.0%} of the app alone",
            kept >= THROUGHPUT_KEPT,
        ),
        Target(
            f"app p99 during {run.label} ≤ 2x the app alone",
            f"{p99:.2f}x ({load.p99_ms:.1f} against {alone.p99_ms:.1f} ms; "
            f"{load.p99_ms / results.reference.p99_ms:.2f}x the reference)",
            p99 <= P99_OVER_ALONE,
        ),
        Target(
            f"no app write waits > 250 ms for a lock during {run.label}",
            f"longest {load.longest_lock_wait_ms:.0f} ms",
            load.longest_lock_wait_ms <= LOCK_WAIT_MS,
        ),
    ]


def contract(results: Results) -> list[Target]:
    return [
        Target(
            f"EnforceNotNull holds ACCESS EXCLUSIVE < 50 ms at {times.rows:,} rows",
            f"{times.enforce_not_null_longest_exclusive_ms:.1f} ms "
            f"(plain SET NOT NULL {times.plain_set_not_null_ms:.1f} ms)",
            times.enforce_not_null_longest_exclusive_ms < EXCLUSIVE_MS,
        )
        for times in results.contracts
    ]


def scaling(results: Results) -> list[Target]:
    """The two largest sizes: a small job is dominated by fixed costs (start, last pass)."""
    if len(results.scaling) < 2:
        return []
    smaller, larger = sorted(results.scaling, key=lambda r: r.table_rows)[-2:]
    sizes = f"{smaller.table_rows:,} to {larger.table_rows:,} rows"
    kept = larger.rows_per_second / smaller.rows_per_second
    memory = larger.peak_memory_mb / smaller.peak_memory_mb
    return [
        Target(
            f"S2 rows/s flat from {sizes} (at least 80%)",
            f"{smaller.rows_per_second:,.0f} to {larger.rows_per_second:,.0f} ({kept:.0%})",
            kept >= FLAT,
        ),
        Target(
            f"worker memory does not grow from {sizes} (at most +20%)",
            f"{smaller.peak_memory_mb:.0f} to {larger.peak_memory_mb:.0f} MB",
            memory <= 1 / FLAT,
        ),
    ]


def schema_gaps(results: Results) -> list[Target]:
    """Only the steps that wait for a gap: queueing for the lock is shown as what it costs."""
    return [
        Target(
            f"{gap.step} behind a {gap.hold_seconds:.0f} s transaction: "
            f"no app write waits ≥ {GAP_STALL_MS:.0f} ms",
            f"longest {gap.app_longest_ms:,.0f} ms, applied in {gap.seconds:.1f} s",
            gap.app_longest_ms < GAP_STALL_MS,
        )
        for gap in results.schema_gaps
        if gap.mode == "gap"
    ]


def verified(results: Results) -> Target:
    runs = results.all_runs()
    return Target(
        "every run verified",
        ", ".join(r.label for r in runs if not r.correct) or "all correct",
        all(r.correct for r in runs),
    )
