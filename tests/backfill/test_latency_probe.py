"""Commit latency timed beside the batches, on a connection of the probe's own."""

import time

import pytest
from django.db import connection

from backfill.conf import Budgets
from backfill.pacing import health
from backfill.pacing.controller import Controller, SpeedLimit
from backfill.pacing.pacer import Pacer
from organizations.models import Organization
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_a_probe_times_commits_from_its_own_process_until_stopped():
    before = sessions()
    probe = health.LatencyProbe(spacing=0.01)
    probe.start()
    wait_for(lambda: sessions() == before + 1, timeout=5, interval=0.05)
    time.sleep(0.3)
    reading = probe.reading()
    assert reading is not None
    assert 0 < reading < 1000
    probe.forget()
    assert probe.reading() is None
    probe.stop()
    assert not probe.running
    wait_for(lambda: sessions() == before, timeout=5, interval=0.05)


def test_the_pacer_slows_for_commits_the_probe_timed_while_the_batches_ran():
    """Between batches the database is quick: only the probe saw the slow commits."""
    probe = health.LatencyProbe()
    now = time.monotonic()
    # Twelve times the baseline, while the batches ran; and one from before the window.
    probe.timings.extend([(now - 10, 0.1)] + [(now, 12.0)] * 10)
    pacer = Pacer(
        job_id=0,
        table=Organization._meta.db_table,
        controller=Controller(floor_ms=0, ceiling_ms=5000, min_batch=50, max_batch=20000),
        budgets=Budgets(
            latency_ratio=2, replica_lag_seconds=5, transaction_age_seconds=300, wal_mb_per_second=0
        ),
        baseline_ms=1.0,
        pace=SpeedLimit(),
        interval=0,
        probe=probe,
    )
    pace = pacer.current()
    assert (pace.limit, pace.pause_ms, pace.batch_cap) == ("latency", 20, 10000)
    assert not probe.timings  # they made the job slow down: they must not do it twice
    pacer.close()
    assert pacer.probe is None


def test_a_reading_is_the_slow_end_of_the_window_only():
    probe = health.LatencyProbe(window=3)
    now = time.monotonic()
    probe.timings.extend([(now - 5, 40.0)] * 10 + [(now, 1.0)] * 18 + [(now, 9.0)] * 2)
    assert probe.reading() == 1.0  # one commit in ten may be slow; older ones are gone
    probe.timings.extend([(now, 9.0)] * 2)
    assert probe.reading() == 9.0


def test_a_baseline_is_the_slow_end_of_commits_spaced_as_the_probe_spaces_them():
    started = time.monotonic()
    baseline = health.baseline_ms(probes=10, spacing=0.02)
    assert time.monotonic() - started >= 10 * 0.02
    assert 0 < baseline < 1000
