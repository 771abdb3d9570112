"""How figures, times, keys and shares read: `backfill.engine.display`, one place."""

from datetime import timedelta

import pytest
from django.utils import timezone

from backfill.engine import display
from backfill.templatetags.backfill_display import percent, whole_percent
from tests.e2e.readable import raw_figures


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("1000000 / 1000000", ["1000000", "1000000"]),
        ("498957 of ~506559", ["498957", "506559"]),
        ("13589 of about 20151", ["13589", "20151"]),
        ("at 22800 rows/s, 99999%", ["22800", "99999"]),
        ("1,000,000 of 1,000,000 rows · 2.3k rows/s · 99%", []),
        ("2280 rows/s · pid 123456 · 2025-06-01 14:03:22", []),
    ],
)
def test_the_readability_check_finds_figures_without_separators(text, found):
    assert raw_figures(text) == found


def test_counts_have_thousands_separators_and_rates_are_short():
    assert display.count(1_000_000) == "1,000,000"
    assert display.count(None) == "\u2013"
    assert display.rate(850) == "850 rows/s"
    assert display.rate(2_280) == "2.3k rows/s"
    assert display.rate(15_234) == "15k rows/s"
    assert display.rate(1_250_000) == "1.2M rows/s"


@pytest.mark.parametrize(
    ("low", "high", "words"),
    [
        (30, None, "under a minute left"),
        (170, 180, "about 3 min left"),
        (170, 290, "about 3\u20135 min left"),
        (30, 200, "up to 3 min left"),
        (4_000, 9_000, "about 1 h 10 min to 2 h 30 min left"),
    ],
)
def test_time_left_is_a_range_in_words_when_the_pace_varies(low, high, words):
    assert display.time_left(low, high) == words


def test_times_are_relative_with_the_exact_one_kept_for_hover():
    now = timezone.now()
    assert display.relative(now - timedelta(seconds=20), now) == "just now"
    assert display.relative(now - timedelta(minutes=4, seconds=50), now) == "4 min ago"
    assert display.relative(now - timedelta(hours=3), now) == "3 h ago"
    assert display.relative(now - timedelta(days=1, hours=2), now) == "yesterday"
    assert display.exact(now).startswith(timezone.localtime(now).strftime("%Y-%m-%d %H:%M:%S"))


def test_slices_are_described_in_words_with_formatted_bounds():
    assert display.key_range(None, "7500") == "keys up to 7,500"
    assert display.key_range("7500", "1000000") == "keys 7,501 to 1,000,000"
    uuid = "0f8e5a2c-7a1b-4c3d-9e8f-1234567890ab"
    assert display.key_range(uuid, uuid) == "keys after 0f8e5a2c-7a1\u2026 up to 0f8e5a2c-7a1\u2026"
    assert display.share(4, "names") == "a quarter of the names, by hash"
    assert display.share(2, "names") == "half of the names, by hash"
    assert display.share(12, "names") == "1/12 of the names, by hash"


@pytest.mark.parametrize(
    ("bound", "shown"),
    [
        ("12345", "12,345"),
        ("-5", "-5"),
        ("00012", "00012"),
        ("²", "²"),
        ("--5", "--5"),
        ("١٢٣", "١٢٣"),
    ],
)
def test_a_key_is_formatted_only_when_formatting_shows_the_same_key(bound, shown):
    assert display.key(bound) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [(999_999.6, "1M"), (999.96, "1k"), (1e12, "1,000B"), (-0.04, "0"), (float("nan"), "\u2013")],
)
def test_a_compact_figure_is_rounded_before_its_unit_is_chosen(value, shown):
    assert display.compact(value) == shown


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(3599, "1 h"), (90_000, "1 d 1 h"), (6e10, "694,444 d 10 h")],
)
def test_long_durations_have_days_and_separators(seconds, words):
    assert display.duration(seconds) == words


def test_an_endless_time_left_says_so_in_words():
    assert display.time_left(6e10) == "more than a week left"
    assert display.time_left(3600, 6e10) == "1 h to more than a week left"


def test_the_bar_never_shows_100_before_the_end():
    assert (whole_percent(0.999), percent(0.999)) == (99, "99%")
