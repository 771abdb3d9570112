"""Replica lag during a backfill: unpaced S2 against S2auto, with a streaming standby attached.

A private primary and standby (tests/standby.py: initdb, pg_basebackup and
pg_ctl on free ports, fsync on; the standby held to a share of one CPU, as
a standby on a smaller machine), the organizations seeded on the primary, and
the same job run twice on copies of that table: two workers unpaced, then two
workers with health-aware pacing at a replica-lag budget. A sampler reads the
standby's replay position every 0.2 s and measures how long ago the WAL it
has not replayed yet was written (as the workers' pacing does, from its own
record of WAL positions): the lag an app reading from the standby sees.

    python -m benchmarks.replica_lag --rows 300000 --budget 1 --standby-cpu 20
"""

import argparse
import json
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from backfill.pacing.health import WalHistory
from benchmarks.databases import manage
from benchmarks.workers import Workers
from tests.standby import PrimaryAndStandby

SAMPLE_SECONDS = 0.2
# A broker database of its own: the suite's workers never see this benchmark's tasks.
BROKER_URL = "redis://127.0.0.1:6379/13"


@dataclass
class LagRun:
    label: str
    method: str
    rows: int
    seconds: float
    lag_p50_s: float
    lag_p99_s: float
    lag_max_s: float
    budget_s: float
    over_budget_s: float  # time the lag spent above the budget
    throttled_s: float = 0.0
    lags: list[tuple[float, float]] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class LagSampler:
    """Replay lag, in seconds, every SAMPLE_SECONDS while a job runs."""

    def __init__(self, primary_url: str) -> None:
        self.conn = psycopg.connect(primary_url, autocommit=True)
        self.history = WalHistory()
        self.samples: list[tuple[float, float]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stopping.is_set():
            row = self.conn.execute(
                "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, "
                "(SELECT min(replay_lsn) - '0/0'::pg_lsn FROM pg_stat_replication)"
            ).fetchone()
            now = time.monotonic()
            assert row is not None
            self.history.add(now, int(row[0]))
            if row[1] is not None:
                lag = self.history.lag_seconds(int(row[1]), now) or 0.0
                self.samples.append((time.time(), lag))
            time.sleep(SAMPLE_SECONDS)

    def __enter__(self) -> "LagSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        self.conn.close()


def job(primary: PrimaryAndStandby, db: str) -> tuple[int, float, float, float]:
    with primary.primary.connect(db) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM started_at), extract(epoch FROM finished_at), "
            "throttled_seconds, (SELECT sum(rows_done) FROM backfill_slice s WHERE s.job_id = j.id) "
            "FROM backfill_job j ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    started, finished, throttled, rows = row
    return int(rows), float(started), float(finished), float(throttled)


def measure(
    pair: PrimaryAndStandby, db: str, label: str, pace: bool, budget: float, logs: Path
) -> LagRun:
    env = {"DATABASE_URL": pair.primary.url(db)}
    options = [f"--max-replica-lag={budget}"] if pace else []
    with Workers(db, 2, logs / label, env, BROKER_URL), LagSampler(pair.primary.url(db)) as sampler:
        manage(
            db,
            *("backfill", "run", "admin_groups", "--concurrency=2"),
            f"--pace={'auto' if pace else 'off'}",
            *options,
            quiet=True,
            REDIS_URL=BROKER_URL,
            **env,
        )
    rows, started, finished, throttled = job(pair, db)
    lags = [(t - started, lag) for t, lag in sampler.samples if started <= t <= finished]
    values = sorted(lag for _, lag in lags) or [0.0]
    return LagRun(
        label=label,
        method="this service, 2 workers, "
        + (f"pacing with --max-replica-lag {budget:g}s" if pace else "unpaced"),
        rows=rows,
        seconds=finished - started,
        lag_p50_s=round(statistics.median(values), 2),
        lag_p99_s=round(values[min(len(values) - 1, int(len(values) * 0.99))], 2),
        lag_max_s=round(values[-1], 2),
        budget_s=budget,
        over_budget_s=round(SAMPLE_SECONDS * sum(1 for v in values if v > budget), 1),
        throttled_s=round(throttled, 1),
        lags=[(round(t, 2), round(lag, 2)) for t, lag in lags],
    )


def caught_up(pair: PrimaryAndStandby, timeout: float = 900.0) -> None:
    """Wait until the standby has replayed everything written so far."""
    deadline = time.monotonic() + timeout
    with pair.primary.connect() as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        while time.monotonic() < deadline:
            behind = conn.execute(
                "SELECT min(replay_lsn) < %s FROM pg_stat_replication", target
            ).fetchone()
            if behind is not None and behind[0] is False:
                return
            time.sleep(0.5)
    raise TimeoutError("the standby did not catch up")


def run(rows: int, budget: float, standby_cpu: int, logs: Path) -> list[LagRun]:
    pair = PrimaryAndStandby(durable=True)
    try:
        pair.start()
        if standby_cpu and not pair.limit_standby_cpu(standby_cpu):
            print("no cgroup to limit the standby's CPU: it replays at full speed", flush=True)
        with pair.primary.connect() as conn:
            conn.execute("CREATE DATABASE lag_template")
        env = {"DATABASE_URL": pair.primary.url("lag_template")}
        manage("lag_template", "migrate", "-v0", quiet=True, **env)
        manage("lag_template", "migrate", "organizations", "0005", "-v0", quiet=True, **env)
        manage("lag_template", "seed_organizations", "--count", str(rows), quiet=True, **env)
        with pair.primary.connect("lag_template") as conn:
            conn.execute("VACUUM ANALYZE")
        runs = []
        for label, pace in (("S2", False), ("S2auto", True)):
            db = f"lag_{label.lower()}"
            with pair.primary.connect() as conn:
                conn.execute(f"CREATE DATABASE {db} TEMPLATE lag_template")
            pair.wait_for_streaming()
            caught_up(pair)  # the copy of the table replayed before the clock starts
            result = measure(pair, db, label, pace, budget, logs)
            print(
                f"{label}: {result.rows:,} rows in {result.seconds:.1f} s "
                f"({result.rows_per_second:,.0f} rows/s), replay lag p50 {result.lag_p50_s} s, "
                f"p99 {result.lag_p99_s} s, max {result.lag_max_s} s, "
                f"{result.over_budget_s} s over the {budget:g} s budget",
                flush=True,
            )
            runs.append(result)
        return runs
    finally:
        pair.stop()


def markdown(runs: list[LagRun], command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        "| run | method | rows/s | replay lag p50 / p99 / max | time over the budget | throttled |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.label} | {r.method} | {r.rows_per_second:,.0f} "
            f"| {r.lag_p50_s} / {r.lag_p99_s} / {r.lag_max_s} s "
            f"| {r.over_budget_s} s of {r.seconds:.0f} s | {r.throttled_s} s |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--budget", type=float, default=1.0, help="replica lag budget (s)")
    parser.add_argument(
        "--standby-cpu",
        type=int,
        default=20,
        help="percent of one CPU the standby gets (20; 0: no limit)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    options = parser.parse_args()
    command = (
        f"python -m benchmarks.replica_lag --rows {options.rows} --budget {options.budget:g} "
        f"--standby-cpu {options.standby_cpu}"
    )
    runs = run(
        options.rows, options.budget, options.standby_cpu, Path("benchmarks/logs/replica-lag")
    )
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "replica-lag.json").write_text(
        json.dumps([{**asdict(r), "rows_per_second": r.rows_per_second} for r in runs], indent=2)
    )
    text = markdown(runs, command)
    (options.out / "replica-lag.md").write_text("# Replica lag during a backfill\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
