"""Template filters for the dashboard: every figure through `backfill.engine.display`."""

from datetime import datetime

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from backfill.engine import display
from backfill.engine.progress import Progress

register = template.Library()


@register.filter
def count(value: float | None) -> str:
    """1,000,000."""
    return display.count(value)


@register.filter
def rate(value: float | None) -> str:
    """2.3k rows/s."""
    return display.rate(value)


@register.filter
def duration(seconds: float | None) -> str:
    """1 min 12 s."""
    return display.duration(seconds)


@register.filter
def percent(fraction: float) -> str:
    """41%, never 100% before the end (the bar's own fraction decides that)."""
    return f"{whole_percent(fraction)}%"


@register.filter
def whole_percent(fraction: float) -> int:
    """The one whole percent the bar's width, its value and its text all show:
    rounded down, so 99.9% is 99 everywhere, as `Progress.fraction` means it."""
    return int(fraction * 100)


@register.filter
def when(at: datetime | None) -> SafeString | str:
    """ "3 min ago", with the exact time on hover and for machines."""
    if at is None:
        return ""
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        at.isoformat(),
        display.exact(at),
        display.relative(at),
    )


@register.filter
def time_left(progress: Progress) -> str:
    """About how long is left while it runs, a range when the pace varies."""
    if progress.eta_range_seconds:
        return display.time_left(*progress.eta_range_seconds)
    return display.time_left(progress.eta_seconds)


@register.filter
def key(value: object) -> str:
    """A row's key as people read it (integers with separators)."""
    return display.key(None if value is None else str(value))
