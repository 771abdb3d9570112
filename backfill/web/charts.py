"""Small SVG charts drawn by the server: no JavaScript library, no CDN, no build step.

Every chart says what it shows without the page around it: a title and unit
on the value axis, round ticks on both axes, time as minutes:seconds from a
stated clock time, and an `aria-label` that sums it up in a sentence.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from backfill.engine import display

WIDTH = 640
HEIGHT = 200
LEFT = 56
RIGHT = 16
TOP = 28
BOTTOM = 44
# The pace chart's band of limiting signals, above its plot.
BAND_TOP = 30
BAND_HEIGHT = 18
# Steps a time axis may tick at, in seconds: round to a clock's eye.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
TICKS = 4


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    limit: str


@dataclass(frozen=True)
class Frame:
    """Where values and times land in the picture."""

    start: datetime
    seconds: float
    top: float
    plot_top: int = TOP

    def x(self, at: datetime) -> float:
        return LEFT + (at - self.start).total_seconds() / self.seconds * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        bottom = HEIGHT - BOTTOM
        return bottom - value / self.top * (bottom - self.plot_top)


def nice_step(top: float, ticks: int = TICKS) -> float:
    """1, 2 or 5 times a power of ten, so that about `ticks` steps reach `top`."""
    raw = max(top, 1e-9) / ticks
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def time_step(seconds: float) -> int:
    return next((s for s in TIME_STEPS if seconds / s <= 6), TIME_STEPS[-1])


def minutes_seconds(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def svg(label: str, body: str, height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>{body}</svg>'
    )


def text(x: float, y: float, content: str, cls: str = "", anchor: str = "start") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{escape(content)}</text>'


def axes(frame: Frame, unit: str) -> str:
    """Both axes with their ticks, grid lines and titles."""
    bottom = HEIGHT - BOTTOM
    parts = [
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{frame.plot_top}" x2="{LEFT}" y2="{bottom}" class="axis"/>',
        text(LEFT - 8, frame.plot_top - 10, unit, "unit", "start"),
    ]
    step = nice_step(frame.top)
    value = 0.0
    while value <= frame.top + step / 1000:
        y = frame.y(value)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(text(LEFT - 6, y + 4, display.compact(value), "tick", "end"))
        value += step
    tick = time_step(frame.seconds)
    for second in range(0, int(frame.seconds) + 1, tick):
        x = LEFT + second / frame.seconds * (WIDTH - LEFT - RIGHT)
        parts.append(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" class="axis"/>'
        )
        parts.append(text(x, bottom + 16, minutes_seconds(second), "tick", "middle"))
    clock = "h:mm:ss" if frame.seconds >= 3600 else "min:s"
    title = f"time ({clock}) from {display.clock(frame.start)}"
    parts.append(text((LEFT + WIDTH - RIGHT) / 2, HEIGHT - 6, title, "unit", "middle"))
    return "".join(parts)


def frame_for(points: Sequence[Point], plot_top: int = TOP) -> Frame:
    start, end = points[0].at, points[-1].at
    seconds = max((end - start).total_seconds(), 1.0)
    peak = max(p.value for p in points)
    step = nice_step(peak or 1.0)
    return Frame(start, seconds, step * math.ceil((peak or 1.0) / step), plot_top)


def empty(title: str, unit: str) -> str:
    bottom = HEIGHT - BOTTOM
    return svg(
        f"{title}: no data yet",
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" class="axis"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" class="axis"/>'
        + text(LEFT - 8, TOP - 10, unit, "unit")
        + text(LEFT - 6, bottom + 4, "0", "tick", "end")
        + text((LEFT + WIDTH - RIGHT) / 2, HEIGHT / 2, "no data yet", "unit", "middle")
        + text((LEFT + WIDTH - RIGHT) / 2, HEIGHT - 6, "time (min:s)", "unit", "middle"),
    )


def polyline(frame: Frame, points: Sequence[Point]) -> str:
    coords = " ".join(f"{frame.x(p.at):.1f},{frame.y(p.value):.1f}" for p in points)
    return f'<polyline points="{coords}" class="line"/>'


def summary(title: str, points: Sequence[Point], unit: str) -> str:
    values = [p.value for p in points]
    seconds = (points[-1].at - points[0].at).total_seconds()
    return (
        f"{title} over {display.duration(seconds)}: latest {display.compact(values[-1])} {unit}, "
        f"peak {display.compact(max(values))} {unit}"
    )


def line_chart(points: Sequence[Point], title: str, unit: str) -> str:
    """`value` over time, on axes with round ticks and the unit named."""
    if len(points) < 2:
        return empty(title, unit)
    frame = frame_for(points)
    return svg(summary(title, points, unit), axes(frame, unit) + polyline(frame, points))


def pace_chart(points: Sequence[Point], spans: Sequence[Span], paced: bool) -> str:
    """The pause between batches over time, under a band naming the signal that set it."""
    title, unit = "Pause between batches", "ms pause"
    if len(points) < 2:
        return empty(title, unit)
    frame = frame_for(points, plot_top=BAND_TOP + BAND_HEIGHT + 22)
    label = summary(title, points, unit) + "; " + legend_text(spans, paced)
    return svg(label, band(frame, spans, paced) + axes(frame, unit) + polyline(frame, points))


def band(frame: Frame, spans: Sequence[Span], paced: bool) -> str:
    parts = [text(LEFT - 6, BAND_TOP + 13, "limit", "tick", "end")]
    parts.append(
        f'<rect x="{LEFT}" y="{BAND_TOP}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{BAND_HEIGHT}" class="band-empty"/>'
    )
    for s in spans:
        if not s.limit:
            continue
        x, w = frame.x(s.start), max(2.0, frame.x(s.end) - frame.x(s.start))
        name = signal_name(s.limit)
        parts.append(
            f'<rect x="{x:.1f}" y="{BAND_TOP}" width="{w:.1f}" height="{BAND_HEIGHT}" '
            f'class="limit {escape(s.limit)}"><title>{escape(name)}</title></rect>'
        )
        if w > 7 * len(name):
            parts.append(text(x + 4, BAND_TOP + 13, name, "limit-label"))
    parts.append(text(LEFT, BAND_TOP - 8, legend_text(spans, paced), "legend"))
    return "".join(parts)


def signal_name(limit: str) -> str:
    return limit.replace("_", " ")


def legend_text(spans: Sequence[Span], paced: bool) -> str:
    """How long each signal limited the pace, longest first: "replica lag 40 s, nothing 3 min"."""
    if not paced:
        return "pacing off: the pause is the job's own"
    seconds: dict[str, float] = {}
    for s in spans:
        seconds[s.limit] = seconds.get(s.limit, 0.0) + (s.end - s.start).total_seconds()
    ranked = sorted(seconds.items(), key=lambda item: -item[1])
    return "limited by: " + ", ".join(
        f"{signal_name(limit) or 'nothing'} {display.duration(length)}" for limit, length in ranked
    )


def bucketed_rate(samples: Sequence[tuple[datetime, int]], buckets: int = 60) -> list[Point]:
    """Rows per second over time, summed into at most `buckets` time slots."""
    if len(samples) < 2:
        return []
    start, end = samples[0][0], samples[-1][0]
    span = max((end - start).total_seconds(), 1.0)
    # Slots of a second or more: shorter ones show batch boundaries, not a rate.
    buckets = max(2, min(buckets, int(span)))
    width = span / buckets
    totals = [0] * buckets
    for at, rows in samples:
        index = min(buckets - 1, int((at - start).total_seconds() / width))
        totals[index] += rows
    return [Point(start + (end - start) * (i / buckets), totals[i] / width) for i in range(buckets)]


def limit_spans(samples: Sequence[tuple[datetime, str]]) -> list[Span]:
    """Runs of consecutive batches paced by the same signal ("" for none)."""
    spans: list[Span] = []
    for at, limit in samples:
        if spans and spans[-1].limit == limit:
            spans[-1] = Span(spans[-1].start, at, limit)
        else:
            spans.append(Span(at, at, limit))
    return spans
