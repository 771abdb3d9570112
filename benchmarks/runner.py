"""How one measure becomes a run: on a fresh copy of its template, while the app load
writes to it, after a window of that load alone, verified once nothing writes.

The app load alone is the yardstick: the reference before any run, and each
run's own window on its own copy right before it.
"""

import time
from pathlib import Path

from benchmarks.app_load import AppLoad, LoadReport, p99_timeline
from benchmarks.databases import copy_of, drop, python_json
from benchmarks.results import Run
from benchmarks.scenarios import Measure
from benchmarks.templates import PREFIX, Template

# As long as a run under load, so that the reference's p99 rests on as many
# writes as the p99s weighed against it: 20 s (4,000 writes, the p99 their
# 40th slowest) read 4.2 to 5.7 ms in three windows one after the other.
REFERENCE_SECONDS = 60
# Each run under load is also weighed against the app alone on its own copy
# right before it: on a shared machine the app's p99 alone drifts over the
# day (5.2 ms in one run's reference, 15.6 ms in a run that afternoon,
# where B and S1 then ran at lower p99s than that), and a window next to
# the run drifts with it. The first seconds on a fresh copy are not
# counted: its pages are not yet in shared_buffers.
ALONE_SECONDS = 30
ALONE_WARMUP_SECONDS = 5
# What a copy must not hold once verified, whatever the run.
BROKEN = ("shared_groups", "orphan_groups", "took_existing_group", "misnamed")


def check(run: Run, template: Template, db: str) -> None:
    """Verify `db` once nothing writes to it any more; a full run must leave no row pending."""
    counts = python_json(
        db,
        "benchmarks.verify",
        f"--floor={template.group_floor}",
        f"--digest={template.groups_digest}",
    )
    sound = not any(counts[k] for k in (*BROKEN, "existing_groups_changed"))
    complete = run.extrapolated or (counts["pending"] == 0 and run.rows == template.rows)
    run.verification, run.correct = counts, sound and complete


def under_load(
    template: Template,
    label: str,
    measure: Measure,
    out: Path,
    rate: float,
    alone_seconds: float = ALONE_SECONDS,
    kind: str = "orm",
) -> tuple[Run, str]:
    """Run `measure` on a fresh copy while the app load (of `kind`) writes to it
    (none at rate 0), after `alone_seconds` of the load alone; returns the copy too."""
    db = copy_of(template.db, f"{PREFIX}_{label.lower().replace(' ', '_')}")
    if not rate:
        result = measure(db)
        check(result, template, db)
        return result, db
    load_file = out / f"load-{label.replace(' ', '-')}.json"
    with AppLoad(db, load_file, rate=rate, kind=kind) as load:
        time.sleep(ALONE_WARMUP_SECONDS)
        alone_from = time.time()
        time.sleep(alone_seconds)
        alone_until = time.time()
        result = measure(db)
    check(result, template, db)
    result.alone = load.report(alone_from, alone_until)
    start, end = result.started_at, result.started_at + result.seconds
    result.load = load.report(start, end)
    result.app_p99 = p99_timeline(load.writes, start, end)
    return result, db


def reference(
    template: Template, seconds: float, out: Path, rate: float, kind: str = "orm"
) -> LoadReport:
    """The app load (of `kind`, app_load.py) alone on a copy of `template`, for `seconds`."""
    db = copy_of(template.db, f"{PREFIX}_ref")
    with AppLoad(db, out / "load-ref.json", rate=rate, kind=kind) as load:
        start = time.time()
        time.sleep(seconds)
        end = time.time()
    drop(db)
    return load.report(start, end)


def measure_all(
    template: Template,
    measures: dict[str, Measure],
    logs: Path,
    rate: float,
    alone_seconds: float = ALONE_SECONDS,
    kind: str = "orm",
) -> list[Run]:
    """Each measure under the load in turn, each on its own copy, dropped once verified."""
    runs = []
    for label, measure in measures.items():
        run, db = under_load(template, label, measure, logs, rate, alone_seconds, kind)
        run.label = label
        drop(db)
        print(
            f"{label}: {run.rows:,} rows in {run.seconds:.1f} s, "
            f"{run.lock_timeouts} lock timeouts, load {run.load}, alone before it {run.alone}",
            flush=True,
        )
        runs.append(run)
    return runs
