"""Text renderings of progress for terminals: a bar, a rate, an ETA."""

from datetime import timedelta

from backfill.engine.progress import Progress

BAR_WIDTH = 30


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    return str(timedelta(seconds=int(seconds)))


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(fraction * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def progress_line(progress: Progress) -> str:
    total = f"{progress.rows_total:,}" + ("~" if progress.rows_total_is_estimate else "")
    return (
        f"{progress.name} #{progress.job_id} {bar(progress.fraction)} "
        f"{progress.fraction * 100:5.1f}%  {progress.rows_done:,}/{total} rows  "
        f"{progress.rows_per_second:,.0f} rows/s  ETA {duration(progress.eta_seconds)}  "
        f"{progress.status}"
        + (f"  {progress.lock_timeouts} lock timeouts" if progress.lock_timeouts else "")
        + paced(progress)
    )


def paced(progress: Progress) -> str:
    """What holds a running job back, when something does."""
    pace = progress.pace
    if progress.status != "running" or not pace.get("limit"):
        return ""
    return f"  paced {pace['pause_ms']} ms by {pace['limit'].replace('_', ' ')}"
