"""The pacing controller and the WAL history it reads replica lag from: pure logic."""

import itertools
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backfill.conf import Budgets
from backfill.pacing import controller as pacing
from backfill.pacing.controller import Controller, Signals, SpeedLimit
from backfill.pacing.health import WalHistory, replica_lag

BUDGETS = Budgets(
    latency_ratio=2.0, replica_lag_seconds=5.0, transaction_age_seconds=300, wal_mb_per_second=0
)
CONTROLLER = Controller(floor_ms=0, ceiling_ms=5000, min_batch=50, max_batch=20000)
CALM = Signals(latency_ms=0.8, baseline_ms=1.0, replica_lag_seconds=0.0)


def steps(signals: Signals, count: int, pace: SpeedLimit | None = None) -> list[SpeedLimit]:
    pace = pace or SpeedLimit()
    paces = []
    for _ in range(count):
        pace = CONTROLLER.next(pace, signals, BUDGETS)
        paces.append(pace)
    return paces


def test_with_room_the_pace_stays_at_the_floor_and_names_nothing():
    assert steps(CALM, 5) == [SpeedLimit(0, None, "")] * 5


def test_a_slow_commit_doubles_the_pause_and_halves_the_batch():
    slow = replace(CALM, latency_ms=3.0)  # 3x the baseline, over a 2x budget
    paces = steps(slow, 4)
    assert [p.pause_ms for p in paces] == [20, 40, 80, 160]
    assert [p.batch_cap for p in paces] == [10000, 5000, 2500, 1250]
    assert {p.limit for p in paces} == {"latency"}


def test_replica_lag_close_to_its_budget_stops_the_job_at_once():
    lagging = replace(CALM, replica_lag_seconds=4.1)
    assert steps(lagging, 1) == [SpeedLimit(5000, 50, "replica_lag")]


def test_a_transaction_past_half_its_budget_slows_and_close_to_it_stops():
    old = replace(CALM, transaction_age_seconds=200)
    assert steps(old, 1)[0] == SpeedLimit(20, None, "transaction_age")
    older = replace(CALM, transaction_age_seconds=250)
    assert steps(older, 1)[0].pause_ms == 5000


def test_close_to_a_budget_the_pace_holds():
    near = replace(CALM, latency_ms=1.8)
    assert (
        steps(near, 3, SpeedLimit(300, None, "latency")) == [SpeedLimit(300, None, "latency")] * 3
    )


def test_replica_lag_past_half_its_budget_already_slows_the_job():
    """Held steady, a lag that grows would only cross its budget later."""
    near = replace(CALM, replica_lag_seconds=3.0)
    assert [p.pause_ms for p in steps(near, 3, SpeedLimit(300))] == [600, 1200, 2400]


def test_once_the_signal_clears_the_pause_shrinks_back_to_the_floor_and_the_batch_grows():
    paces = steps(CALM, 30, SpeedLimit(5000, 50, "replica_lag"))
    assert [p.pause_ms for p in paces[:4]] == [1245, 306, 71, 12]  # plenty of room: fast
    assert all(a.pause_ms >= b.pause_ms for a, b in itertools.pairwise(paces))
    assert paces[-1].pause_ms == 0
    assert paces[-1].batch_cap is None
    assert paces[-1].limit == ""


def test_with_some_room_the_pause_shrinks_by_steps():
    some = replace(CALM, latency_ms=1.2)  # 0.6 of the budget
    assert [p.pause_ms for p in steps(some, 3, SpeedLimit(1000))] == [745, 553, 409]


def test_the_job_pause_is_a_floor_the_controller_never_goes_under():
    floored = Controller(floor_ms=100, ceiling_ms=5000, min_batch=50, max_batch=20000)
    assert floored.next(SpeedLimit(100), CALM, BUDGETS).pause_ms == 100
    assert floored.next(SpeedLimit(100), replace(CALM, latency_ms=5), BUDGETS).pause_ms == 200


def test_autovacuum_on_the_table_holds_the_pace_without_slowing():
    vacuuming = replace(CALM, autovacuum=True)
    assert steps(vacuuming, 2, SpeedLimit(40)) == [SpeedLimit(40, None, "autovacuum")] * 2


def test_the_wal_rate_counts_only_under_a_cap():
    busy = replace(CALM, wal_mb_per_second=80.0)
    assert steps(busy, 1)[0].limit == ""  # no cap by default
    capped = replace(BUDGETS, wal_mb_per_second=50.0)
    assert CONTROLLER.next(SpeedLimit(), busy, capped).limit == "wal_rate"


def test_a_sub_millisecond_baseline_is_not_held_to_its_noise():
    fast = Signals(latency_ms=0.6, baseline_ms=0.1)  # 6x, but only half a millisecond more
    assert pacing.pressures(fast, BUDGETS)[pacing.LATENCY] == pytest.approx(0.6)


def test_unknown_signals_and_zero_budgets_weigh_nothing():
    unknown = Signals()
    assert pacing.pressures(unknown, BUDGETS) == {}
    no_budgets = Budgets(0, 0, 0, 0)
    assert pacing.pressures(replace(CALM, latency_ms=50, replica_lag_seconds=99), no_budgets) == {}


def test_the_worst_signal_is_the_one_named():
    both = replace(CALM, latency_ms=2.4, replica_lag_seconds=7.0)  # 1.2 and 1.4 of budget
    assert CONTROLLER.next(SpeedLimit(), both, BUDGETS).limit == "replica_lag"


@given(
    pause=st.integers(0, 10_000),
    cap=st.none() | st.integers(1, 40_000),
    latency=st.none() | st.floats(0, 1000),
    lag=st.none() | st.floats(0, 1e6),
    age=st.none() | st.floats(0, 1e6),
    wal=st.none() | st.floats(0, 1e5),
    vacuum=st.booleans(),
)
def test_any_reading_keeps_the_pace_within_its_bounds(pause, cap, latency, lag, age, wal, vacuum):
    floored = Controller(floor_ms=25, ceiling_ms=5000, min_batch=50, max_batch=20000)
    signals = Signals(latency, 1.0, lag, age, wal, vacuum)
    budgets = replace(BUDGETS, wal_mb_per_second=10)
    pace = floored.next(SpeedLimit(pause, cap), signals, budgets)
    assert 25 <= pace.pause_ms <= 5000
    assert pace.batch_cap is None or 50 <= pace.batch_cap < 20000 or pace.batch_cap == cap
    over = {n for n, v in pacing.pressures(signals, budgets).items() if v > 1.0}
    if over:
        assert pace.limit in over  # something over its budget is always named
        assert pace.pause_ms >= min(5000, max(pause, 25))  # and never sped up for


def test_lag_is_how_long_ago_the_first_unreplayed_wal_was_written():
    history = WalHistory()
    for second, lsn in enumerate([100, 200, 300, 400]):
        history.add(float(second), lsn)
    assert history.lag_seconds(replayed=400, now=3.0) == 0.0
    assert history.lag_seconds(replayed=250, now=3.0) == pytest.approx(1.0)  # 300 written at 2 s
    assert history.lag_seconds(replayed=250, now=13.0) == pytest.approx(
        11.0
    )  # replay paused: it grows
    assert history.lag_seconds(replayed=50, now=3.0) == pytest.approx(3.0)


def test_replica_lag_is_the_worst_standby_and_unknown_without_one():
    history = WalHistory()
    history.add(0.0, 100)
    history.add(1.0, 200)
    assert replica_lag(history, None, None, now=2.0) is None
    assert replica_lag(history, [200, 150], 0.3, now=2.0) == pytest.approx(1.0)
    assert replica_lag(history, [None], 0.4, now=2.0) == pytest.approx(0.4)


def test_wal_rate_over_the_last_seconds():
    history = WalHistory()
    assert history.rate_mb_per_second(now=0.0) is None
    history.add(0.0, 0)
    history.add(2.0, 10_000_000)
    assert history.rate_mb_per_second(now=2.0) == pytest.approx(5.0)
    assert history.rate_mb_per_second(now=60.0) is None  # nothing recent


@given(st.lists(st.floats(min_value=0, max_value=1e4), min_size=1, max_size=200))
def test_the_tail_is_a_timing_with_at_most_one_in_ten_slower(timings):
    found = pacing.tail(timings)
    assert found in timings
    assert sum(t > found for t in timings) <= len(timings) // 10
    assert sum(t >= found for t in timings) >= 1


def test_the_tail_ignores_one_outlier_in_ten_but_not_two():
    assert pacing.tail([1.0] * 9 + [50.0]) == 1.0
    assert pacing.tail([1.0] * 8 + [50.0, 60.0]) == 50.0


def test_over_the_latency_budget_a_worker_is_shed_while_others_write():
    slow = replace(CALM, latency_ms=3.0)
    before = SpeedLimit()
    after = CONTROLLER.next(before, slow, BUDGETS)
    assert pacing.sheds_worker(before, after, writing=2)
    assert not pacing.sheds_worker(before, after, writing=1)  # the last one is paced instead


def test_no_worker_is_shed_for_any_other_signal_or_while_the_pace_holds():
    lagging = replace(CALM, replica_lag_seconds=3.0)
    assert not pacing.sheds_worker(
        SpeedLimit(), CONTROLLER.next(SpeedLimit(), lagging, BUDGETS), writing=4
    )
    near = replace(CALM, latency_ms=1.8)
    held = SpeedLimit(300, None, "latency")
    assert not pacing.sheds_worker(held, CONTROLLER.next(held, near, BUDGETS), writing=4)


@given(st.integers(0, 20), st.integers(1, 8), st.integers(1, 8))
def test_a_worker_comes_back_only_after_lasting_room_and_never_beyond_the_concurrency(
    calm, writing, concurrency
):
    added = pacing.adds_worker(calm, writing, concurrency)
    assert added == (calm >= pacing.CALM_READINGS_TO_ADD_WORKER and writing < concurrency)


def test_room_is_plenty_only_with_every_signal_under_half_its_budget_and_no_vacuum():
    assert pacing.room_is_plenty(replace(CALM, latency_ms=0.9), BUDGETS)
    assert not pacing.room_is_plenty(replace(CALM, latency_ms=1.1), BUDGETS)
    assert not pacing.room_is_plenty(replace(CALM, replica_lag_seconds=2.6), BUDGETS)
    assert not pacing.room_is_plenty(replace(CALM, latency_ms=0.1, autovacuum=True), BUDGETS)


FLOOR = 0
AT_FLOOR = SpeedLimit(FLOOR, None, "")
PAUSED = SpeedLimit(80, 2500, "latency")
SLOWER = SpeedLimit(160, 1250, "latency")


def latency_pressure(pressure: float) -> Signals:
    """A reading whose latency is `pressure` times the 2x budget (baseline 1 ms)."""
    return replace(CALM, latency_ms=2.0 * pressure)


def evidence_of(paused: float, unpaced: float, readings: int = 5) -> pacing.PauseEvidence:
    evidence = pacing.PauseEvidence()
    for _ in range(readings):
        evidence.observe(PAUSED, FLOOR, latency_pressure(paused), BUDGETS)
        evidence.observe(AT_FLOOR, FLOOR, latency_pressure(unpaced), BUDGETS)
    return evidence


def test_a_pause_that_reads_no_lower_is_given_up_then_tried_again():
    evidence = evidence_of(paused=1.25, unpaced=1.3)
    assert evidence.last_worker_pace(SLOWER, FLOOR) == SpeedLimit(FLOOR, None, "latency")
    # At the floor for a while, whatever latency proposes, still named.
    for _ in range(pacing.PAUSE_RETRY_READINGS):
        assert evidence.last_worker_pace(SLOWER, FLOOR) == SpeedLimit(FLOOR, None, "latency")
    assert len(evidence.paused) == 0  # forgotten: the pause is judged afresh
    assert evidence.last_worker_pace(SLOWER, FLOOR) == SLOWER


def test_a_pause_that_lowers_the_latency_stays():
    evidence = evidence_of(paused=0.9, unpaced=1.3)
    assert evidence.last_worker_pace(SLOWER, FLOOR) == SLOWER
    assert evidence.resting == 0


def test_a_pause_has_the_benefit_of_the_doubt_until_both_are_read():
    evidence = evidence_of(paused=1.3, unpaced=1.3, readings=pacing.PAUSE_EVIDENCE_READINGS - 1)
    assert evidence.last_worker_pace(SLOWER, FLOOR) == SLOWER


def test_held_over_budget_the_pause_is_weighed_against_a_reading_at_the_floor():
    evidence = pacing.PauseEvidence()
    for _ in range(pacing.PAUSE_EVIDENCE_READINGS):
        evidence.observe(PAUSED, FLOOR, latency_pressure(1.5), BUDGETS)
    assert evidence.last_worker_pace(SLOWER, FLOOR) == SpeedLimit(FLOOR, None, "latency")


def test_other_signals_pace_the_last_worker_as_before_even_while_resting():
    evidence = evidence_of(paused=1.3, unpaced=1.3)
    evidence.last_worker_pace(SLOWER, FLOOR)
    stopped = SpeedLimit(5000, 50, "replica_lag")
    assert evidence.last_worker_pace(stopped, FLOOR) == stopped
    # Readings paced by another signal say nothing about what a latency pause buys.
    fresh = pacing.PauseEvidence()
    fresh.observe(stopped, FLOOR, latency_pressure(3.0), BUDGETS)
    assert (len(fresh.paused), len(fresh.unpaced)) == (0, 0)


@given(
    st.lists(
        st.tuples(st.floats(0.0, 5.0), st.booleans(), st.integers(0, 400), st.booleans()),
        max_size=200,
    )
)
def test_the_last_worker_pace_never_pauses_below_its_floor_nor_past_the_proposal(readings):
    evidence = pacing.PauseEvidence()
    floor = 20
    for pressure, paused, pause_ms, for_latency in readings:
        during = SpeedLimit(
            floor + pause_ms if paused else floor, None, "latency" if paused else ""
        )
        evidence.observe(during, floor, latency_pressure(pressure), BUDGETS)
        proposed = SpeedLimit(floor + pause_ms, None, "latency" if for_latency else "wal_rate")
        pace = evidence.last_worker_pace(proposed, floor)
        assert floor <= pace.pause_ms <= proposed.pause_ms
        assert pace == proposed or pace == SpeedLimit(floor, None, "latency")
