"""Small SVG charts drawn by the server: no JavaScript library, no CDN."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

WIDTH = 640
HEIGHT = 160
PAD = 30


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float


def line_chart(points: Sequence[Point], label: str) -> str:
    """A polyline of `value` over time, with the maximum marked on the axis."""
    if len(points) < 2:
        return f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}"><text x="{PAD}" y="{HEIGHT // 2}">no data yet</text></svg>'
    start, end = points[0].at, points[-1].at
    span = max((end - start).total_seconds(), 1e-6)
    top = max(p.value for p in points) or 1.0
    coords = " ".join(
        f"{PAD + (p.at - start).total_seconds() / span * (WIDTH - 2 * PAD):.1f},"
        f"{HEIGHT - PAD - p.value / top * (HEIGHT - 2 * PAD):.1f}"
        for p in points
    )
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<text x="{PAD + 4}" y="{PAD - 8}">{top:,.0f} {label}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end">{span:,.0f} s</text>'
        f'<polyline points="{coords}" class="line"/></svg>'
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


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    limit: str


def limit_spans(samples: Sequence[tuple[datetime, str]]) -> list[Span]:
    """Runs of consecutive batches paced by the same signal ("" for none)."""
    spans: list[Span] = []
    for at, limit in samples:
        if spans and spans[-1].limit == limit:
            spans[-1] = Span(spans[-1].start, at, limit)
        else:
            spans.append(Span(at, at, limit))
    return spans


def limit_band(spans: Sequence[Span], label: str) -> str:
    """A band under the pace chart: which signal limited the pace, when."""
    if not spans:
        return ""
    start, end = spans[0].start, spans[-1].end
    span = max((end - start).total_seconds(), 1e-6)
    width = WIDTH - 2 * PAD
    rects = []
    for s in spans:
        if not s.limit:
            continue
        x = PAD + (s.start - start).total_seconds() / span * width
        w = max(2.0, (s.end - s.start).total_seconds() / span * width)
        name = s.limit.replace("_", " ")
        rects.append(
            f'<rect x="{x:.1f}" y="4" width="{w:.1f}" height="16" class="limit {s.limit}">'
            f"<title>{name}</title></rect>"
            f'<text x="{x + 2:.1f}" y="16" class="limit-label">{name}</text>'
        )
    return (
        f'<svg class="chart band" viewBox="0 0 {WIDTH} 24" role="img" aria-label="{label}">'
        + "".join(rects)
        + "</svg>"
    )
