"""How the engine's figures read to people: counts, rates, durations, times, keys, shares.

One place, so the dashboard and the CLI never disagree on how a number looks:
every count has thousands separators ("1,000,000"), a rate is short ("2.3k
rows/s"), a time left is a rough range in words ("about 3 to 5 min"), a slice is
described rather than coded ("a quarter of the names, by hash").
"""

import math
import re
from datetime import datetime, timedelta

from django.utils import timezone

# What a missing figure shows, and what joins the ends of a range.
NONE = "\u2013"
EN_DASH = "\u2013"
# Below this a rate is shown whole ("850"); from it, in thousands ("2.3k").
COMPACT_FROM = 1_000
# ETAs closer than this (the longer over the shorter) are one figure, not a range.
RANGE_FROM = 1.25

FRACTIONS = {
    1: "all",
    2: "half",
    3: "a third",
    4: "a quarter",
    5: "a fifth",
    6: "a sixth",
    8: "an eighth",
    10: "a tenth",
    16: "a sixteenth",
    32: "a thirty-second",
    64: "a sixty-fourth",
}


def count(value: float | None) -> str:
    """A count of things, with thousands separators: 1,000,000."""
    if value is None or not math.isfinite(value):
        return NONE
    return f"{round(value):,}"


def rate(per_second: float | None, unit: str = "rows/s") -> str:
    """A rate, short: "850 rows/s", "2.3k rows/s", "1.2M rows/s"."""
    if per_second is None:
        return NONE
    return f"{compact(per_second)} {unit}".strip()


# Larger numbers are shown in these units: "2.3k", "15k", "1.2M", "3B".
UNITS = ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k"))
# Past this, a time left is only "more than a week": no estimate is that good.
LONGEST_ESTIMATE = 7 * 86400


def compact(value: float) -> str:
    """A number as an axis tick or a rate shows it: 850, 2.3k, 15k, 1.2M.

    Rounded before the unit is chosen, so 999,999.6 reads "1M", not "1000k".
    """
    if not math.isfinite(value):
        return NONE
    for size, suffix in UNITS:
        scaled = value / size
        if abs(round(scaled, 1)) >= 1:
            return f"{scaled:,.0f}" + suffix if abs(scaled) >= 10 else one_decimal(scaled) + suffix
    if abs(round(value)) >= 10 or value == int(value):
        return f"{round(value):.0f}"
    return one_decimal(value)


def one_decimal(value: float) -> str:
    text = f"{value:.1f}".removesuffix(".0")
    return "0" if text == "-0" else text


def duration(seconds: float | None) -> str:
    """A length of time in the largest units that matter: "45 s", "3 min", "1 h 20 min"."""
    if seconds is None or not math.isfinite(seconds):
        return NONE
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 10 and rest:
        return f"{minutes} min {rest} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours >= 24:
        days, hours = divmod(hours, 24)
        return f"{count(days)} d {hours} h" if hours else f"{count(days)} d"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def rough(seconds: float) -> str:
    """A time left, rounded as people estimate: "under a minute", "3 min", "2 h 10 min"."""
    if seconds < 60:
        return "under a minute"
    if seconds >= LONGEST_ESTIMATE:
        return "more than a week"
    if seconds < 3600:
        return duration(round(seconds / 60) * 60)
    return duration(round(seconds / 600) * 600)


def time_left(low: float | None, high: float | None = None) -> str:
    """About how long is left: "about 3 min left", a range when the pace varies."""
    if low is None:
        return ""
    high = low if high is None else max(low, high)
    shorter, longer = rough(low), rough(high)
    if low >= LONGEST_ESTIMATE:
        return "more than a week left"
    if high >= LONGEST_ESTIMATE:
        return f"{shorter} to more than a week left"
    if high < low * RANGE_FROM or shorter == longer:
        return "under a minute left" if low < 60 else f"about {shorter} left"
    if all(t.endswith(" min") and " h " not in t for t in (shorter, longer)):
        return f"about {shorter.removesuffix(' min')}{EN_DASH}{longer} left"
    if shorter == "under a minute":
        return f"up to {longer} left"
    return f"about {shorter} to {longer} left"


def relative(at: datetime | None, now: datetime | None = None) -> str:
    """When, from now: "just now", "4 min ago", "3 h ago", "2 days ago"."""
    if at is None:
        return ""
    seconds = ((now or timezone.now()) - at).total_seconds()
    if seconds < 0:
        return "in " + rough(-seconds)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return "yesterday" if days == 1 else f"{days} days ago"


def exact(at: datetime | None) -> str:
    """The full time, for a tooltip: "2025-06-01 14:03:22 UTC"."""
    if at is None:
        return ""
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S %Z")


def clock(at: datetime) -> str:
    return timezone.localtime(at).strftime("%H:%M:%S")


def key(text: str | None) -> str:
    """A key bound as people read it: integers with separators, anything else as it is."""
    if text is None:
        return ""
    if is_integer(text):
        return f"{int(text):,}"
    return text if len(text) <= 13 else text[:12] + "…"


def is_integer(text: str) -> bool:
    """Written as an integer is written, so formatting it shows the same key
    ("00012", "²" or "١٢٣" are other keys, shown as they are)."""
    return re.fullmatch(r"-?[0-9]+", text) is not None and str(int(text)) == text


def key_range(after: str | None, high: str) -> str:
    """The keys (after, high]: "keys 1 to 7,500", "keys 7,501 to 15,000", "keys after … up to …"."""
    if after is None:
        return f"keys up to {key(high)}"
    if is_integer(after) and is_integer(high):
        return f"keys {key(str(int(after) + 1))} to {key(high)}"
    return f"keys after {key(after)} up to {key(high)}"


def share(modulus: int, noun: str) -> str:
    """A slice's share of the partition hashes: "a quarter of the names, by hash"."""
    part = FRACTIONS.get(modulus, f"1/{modulus}")
    return f"{part} of the {noun}, by hash"


def elapsed(start: datetime | None, end: datetime | None) -> timedelta | None:
    if start is None:
        return None
    return (end or timezone.now()) - start
