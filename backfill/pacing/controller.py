"""How fast a job may go: as fast as the database has room for, found by itself.

Every second or so a worker reads the database's health (health.py) and asks
`Controller.next` for the pause between its batches and the largest batch it
may take. Each signal is weighed against its budget; the one under the most
pressure sets the pace, and is named so people can see what holds the job
back. As TCP finds a link's rate: over a budget, the pause doubles (and, when
the app's commit latency is what suffers, the batch is halved: a smaller
commit is a shorter WAL flush for the app to queue behind); close to a
budget, the pace holds; with room, the pause shrinks step by step back to the
job's own `pause_ms`, the floor. A signal that only grows while the job
writes faster than it can recover (a standby's replay lag, a transaction
that holds back vacuum) slows the job from half its budget, and from 80%
stops it, re-reading the signals at the longest pause, until there is
room again: slowing down step by step, the lag would overshoot by seconds.

Latency has a second lever, used first: the number of workers writing at
once. Over its budget, a job with more than one worker writing sheds one
instead of pausing them all; only its last worker is paced. On a database
whose CPUs the batches keep busy, each batch holds a core: two workers half
paused still meet inside a batch, both cores taken, where one at full speed
leaves a core to the app. The worker comes back after a few readings in a
row with plenty of room.

The last worker's pause must earn its keep. Where the batches keep the
CPUs busy, the app's slowest writes are the ones that meet a batch, and a
pause between batches does not change what a batch does to them: it only
slows the job (docs/benchmarks.md, "pacing", has the runs). So each worker keeps the latency pressure it read
while pausing for latency and while not (`PauseEvidence`); once pausing
reads no lower, it goes back to its floor for a while, then tries again.
Where pausing does lower the latency (a database with cores to spare whose
commits queue behind the batches' WAL), the pause stays.

Pure: no database, no clock. Unit-tested in tests/backfill/test_pacing.py.
"""

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from backfill.conf import Budgets

LATENCY = "latency"
REPLICA_LAG = "replica_lag"
TRANSACTION_AGE = "transaction_age"
WAL_RATE = "wal_rate"
AUTOVACUUM = "autovacuum"
SIGNALS = (LATENCY, REPLICA_LAG, TRANSACTION_AGE, WAL_RATE, AUTOVACUUM)
# Signals that do not come back down while the job keeps writing at a pace
# they cannot keep up with: held steady, they only grow.
STOPPING = frozenset({REPLICA_LAG, TRANSACTION_AGE})

# Pressure (signal / budget) from which the pace holds; a stopping signal
# slows the job from half its budget and stops it from here: a standby's
# backlog keeps ageing while it drains, so its lag goes on growing for a
# while after the job stops writing.
HOLD = 0.8
# A commit faster than this is not worth slowing for: below it, the probe's
# own noise (scheduling, the round trip) outweighs what the app feels.
MIN_BASELINE_MS = 0.5
# The first pause when slowing down from none, and the steps back up.
FIRST_PAUSE_MS = 20
SPEED_UP_FACTOR = 0.75
# Under this pressure on every signal (a stop has cleared, say), the pause
# shrinks four times faster: a stopped job gets going again in a few readings.
PLENTY = 0.5
PLENTY_SPEED_UP_FACTOR = 0.25
SPEED_UP_STEP_MS = 5
BATCH_GROWTH = 1.25
# Readings in a row with every signal under PLENTY before a job that shed a
# worker takes it back: a worker is a big step up, so the room must last.
CALM_READINGS_TO_ADD_WORKER = 5
# Which commit of a reading stands for the app's latency: the slow end, since
# the app's slowest writes are what a backfill makes worse first.
TAIL_QUANTILE = 0.9


@dataclass(frozen=True)
class Signals:
    """One reading; None where the database did not say (no standby, no rights)."""

    latency_ms: float | None = None
    baseline_ms: float | None = None
    replica_lag_seconds: float | None = None
    transaction_age_seconds: float | None = None
    wal_mb_per_second: float | None = None
    autovacuum: bool = False
    # Signals this role cannot read whole (pg_read_all_stats): what it reads of
    # them is only its own sessions', so their quiet does not mean room.
    unreadable: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpeedLimit:
    """How fast a worker may go now. (`Job.pace` only says whether a job is paced at all.)"""

    pause_ms: int = 0
    # The largest batch allowed; None leaves the batch size to the throttle.
    batch_cap: int | None = None
    # The signal holding the pace back now; "" when nothing does.
    limit: str = ""


def tail(timings: Sequence[float]) -> float:
    """The TAIL_QUANTILE of the timings (nearest rank, so one outlier in ten is ignored)."""
    if not timings:
        raise ValueError("no timings")
    ordered = sorted(timings)
    return ordered[max(0, math.ceil(TAIL_QUANTILE * len(ordered)) - 1)]


def pressures(signals: Signals, budgets: Budgets) -> dict[str, float]:
    """Each signal known, as a share of its budget: above 1.0 it is over."""
    found: dict[str, float] = {}
    if (
        signals.latency_ms is not None
        and signals.baseline_ms
        and signals.baseline_ms > 0
        and budgets.latency_ratio > 0
    ):
        baseline = max(signals.baseline_ms, MIN_BASELINE_MS)
        found[LATENCY] = signals.latency_ms / baseline / budgets.latency_ratio
    for name, value, budget in (
        (REPLICA_LAG, signals.replica_lag_seconds, budgets.replica_lag_seconds),
        (TRANSACTION_AGE, signals.transaction_age_seconds, budgets.transaction_age_seconds),
        (WAL_RATE, signals.wal_mb_per_second, budgets.wal_mb_per_second),
    ):
        if value is not None and budget > 0:
            found[name] = value / budget
    return found


def room_is_plenty(signals: Signals, budgets: Budgets) -> bool:
    """Every signal under PLENTY of its budget, and no vacuum on the table."""
    found = pressures(signals, budgets)
    return not signals.autovacuum and max(found.values(), default=0.0) < PLENTY


def sheds_worker(before: SpeedLimit, after: SpeedLimit, writing: int) -> bool:
    """Slowed down for latency with other workers writing: one stops instead."""
    return after.limit == LATENCY and after.pause_ms > before.pause_ms and writing > 1


def adds_worker(calm_readings: int, writing: int, concurrency: int) -> bool:
    """A worker shed for latency comes back once the room has lasted."""
    return writing < concurrency and calm_readings >= CALM_READINGS_TO_ADD_WORKER


@dataclass(frozen=True)
class Controller:
    floor_ms: int  # the job's own pause: the pace never goes below it
    ceiling_ms: int  # the longest pause: how often a stopped job looks again
    min_batch: int
    max_batch: int

    def start(self) -> SpeedLimit:
        return SpeedLimit(pause_ms=self.floor_ms)

    def next(self, pace: SpeedLimit, signals: Signals, budgets: Budgets) -> SpeedLimit:
        found = pressures(signals, budgets)
        worst = max(found, key=lambda name: found[name], default="")
        level = found.get(worst, 0.0)
        if worst in STOPPING and level > HOLD:
            return SpeedLimit(self.ceiling_ms, self.min_batch, worst)
        if level > 1.0 or (worst in STOPPING and level > PLENTY):
            # A stopping signal keeps growing at a constant pace: slow before the budget.
            return self.slower(pace, worst)
        if level > HOLD:
            return replace(pace, pause_ms=self.clamp(pace.pause_ms), limit=worst)
        if signals.autovacuum:
            # Vacuum is clearing the job's dead rows: let it, without slowing down.
            return replace(pace, pause_ms=self.clamp(pace.pause_ms), limit=AUTOVACUUM)
        return self.faster(pace, plenty=level < PLENTY)

    def slower(self, pace: SpeedLimit, limit: str) -> SpeedLimit:
        pause = self.clamp(max(2 * pace.pause_ms, FIRST_PAUSE_MS, self.floor_ms + FIRST_PAUSE_MS))
        cap = pace.batch_cap
        if limit == LATENCY:
            cap = max(self.min_batch, min(cap or self.max_batch, self.max_batch) // 2)
        return SpeedLimit(pause, cap, limit)

    def faster(self, pace: SpeedLimit, plenty: bool = False) -> SpeedLimit:
        factor = PLENTY_SPEED_UP_FACTOR if plenty else SPEED_UP_FACTOR
        pause = self.clamp(int(pace.pause_ms * factor) - SPEED_UP_STEP_MS)
        cap = pace.batch_cap
        if cap is not None:
            grown = max(self.min_batch, int(cap * BATCH_GROWTH) + 1)
            cap = None if grown >= self.max_batch else grown
        return SpeedLimit(pause, cap, "")

    def clamp(self, pause_ms: int) -> int:
        return max(self.floor_ms, min(self.ceiling_ms, pause_ms))


# Readings of each kind (paused for latency, and at the floor) before a
# pause is judged, and how many of the latest are kept: the probe's
# window spans a few readings, so fewer would judge one burst.
PAUSE_EVIDENCE_READINGS = 5
PAUSE_EVIDENCE_KEPT = 10
# Paused readings must be this much under the floor's to count as a gain:
# less is within what one run's readings spread.
PAUSE_MIN_GAIN = 0.1
# Readings spent at the floor after a pause was given up, before trying
# again: the app's load changes over a day, and so may what helps it. Trying
# costs about a dozen readings paced slower (PAUSE_EVIDENCE_READINGS paused,
# the pause doubling), so this keeps the trials to a few percent of the time.
PAUSE_RETRY_READINGS = 300


@dataclass
class PauseEvidence:
    """What pausing the last worker for latency has bought, as this worker read it."""

    paused: deque[float] = field(default_factory=lambda: deque(maxlen=PAUSE_EVIDENCE_KEPT))
    unpaced: deque[float] = field(default_factory=lambda: deque(maxlen=PAUSE_EVIDENCE_KEPT))
    resting: int = 0  # readings left at the floor after giving a pause up

    def observe(
        self, during: SpeedLimit, floor_ms: int, signals: Signals, budgets: Budgets
    ) -> None:
        """File the latency pressure read while `during` was the pace."""
        pressure = pressures(signals, budgets).get(LATENCY)
        if pressure is None or during.limit not in (LATENCY, ""):
            return
        (self.paused if during.pause_ms > floor_ms else self.unpaced).append(pressure)

    def rest_at_least(self, readings: int) -> None:
        """Another worker of the job gave the pause up: rest as long as it does."""
        if readings > self.resting:
            self.resting = readings

    def pausing_helps(self) -> bool:
        """Unless both kinds have been read often enough, the pause gets the benefit."""
        if min(len(self.paused), len(self.unpaced)) < PAUSE_EVIDENCE_READINGS:
            return True
        paused, unpaced = statistics.median(self.paused), statistics.median(self.unpaced)
        return paused < (1 - PAUSE_MIN_GAIN) * unpaced

    def last_worker_pace(self, proposed: SpeedLimit, floor_ms: int) -> SpeedLimit:
        """The pace for a worker no other can step back for: `proposed`, unless it
        pauses for latency and pausing has not lowered the latency."""
        if self.resting > 0:
            self.resting -= 1
            if self.resting == 0:
                self.paused.clear()  # judge the pause afresh
            if proposed.limit == LATENCY:
                return SpeedLimit(floor_ms, None, LATENCY)
            return proposed
        if proposed.limit != LATENCY or proposed.pause_ms <= floor_ms:
            return proposed
        if len(self.unpaced) < PAUSE_EVIDENCE_READINGS <= len(self.paused):
            # Still over the budget after pausing: one reading at the floor to weigh
            # the pause against (held over budget, the pause would never come down).
            return SpeedLimit(floor_ms, None, LATENCY)
        if not self.pausing_helps():
            self.resting = PAUSE_RETRY_READINGS
            return SpeedLimit(floor_ms, None, LATENCY)
        return proposed
