"""Prometheus metrics, read from the database at scrape time.

A custom collector on a registry of its own: every web process answers with
the same numbers, taken from the same tables the CLI and the dashboard read.
"""

from collections.abc import Iterator

from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from backfill.engine.progress import job_progress
from backfill.models import Job, JobStatus, Sample, Slice
from backfill.pacing.controller import SIGNALS
from backfill.web.permissions import token_or_viewer

# Batch durations, in seconds as Prometheus wants its base units.
BUCKETS_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4)


def reported_jobs() -> list[Job]:
    """The latest job of every definition (the active one, if any, is the latest)."""
    latest: dict[str, Job] = {}
    for job in Job.objects.order_by("-id")[:500]:
        latest.setdefault(job.definition, job)
    return list(latest.values())


class BackfillCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        labels = ["job", "definition"]
        # Counters (exposed with _total) for what only grows over a job's life.
        done = CounterMetricFamily(
            "backfill_job_rows_done", "Rows filled by the job.", labels=labels
        )
        remaining = GaugeMetricFamily(
            "backfill_job_rows_remaining",
            "Rows left (estimated while the total is).",
            labels=labels,
        )
        rate = GaugeMetricFamily(
            "backfill_job_rows_per_second", "Rows per second over the last minute.", labels=labels
        )
        status = GaugeMetricFamily(
            "backfill_job_status", "1 for the job's current status.", labels=[*labels, "status"]
        )
        failed = CounterMetricFamily(
            "backfill_job_failed_batches", "Batches that failed and were retried.", labels=labels
        )
        timeouts = CounterMetricFamily(
            "backfill_job_lock_timeouts",
            "Batches that gave up waiting for a lock (the app's rows, or the job's own).",
            labels=labels,
        )
        pause = GaugeMetricFamily(
            "backfill_job_pace_pause_seconds",
            "The pause between batches that health-aware pacing chose last.",
            labels=labels,
        )
        limited = GaugeMetricFamily(
            "backfill_job_pace_limited",
            "1 for the signal limiting the job's pace now (none: nothing does).",
            labels=[*labels, "signal"],
        )
        writing = GaugeMetricFamily(
            "backfill_job_pace_workers",
            "Workers the job may have writing at once (below its concurrency: latency shed some).",
            labels=labels,
        )
        throttled = CounterMetricFamily(
            "backfill_job_throttled_seconds",
            "Seconds the workers waited for the database's health, beyond the job's pause.",
            labels=labels,
        )
        duration = HistogramMetricFamily(
            "backfill_batch_duration_seconds",
            "Duration of recent committed batches.",
            labels=labels,
        )
        for job in reported_jobs():
            values = [str(job.pk), job.definition]
            progress = job_progress(job)
            done.add_metric(values, progress.rows_done)
            remaining.add_metric(values, max(0, progress.rows_total - progress.rows_done))
            rate.add_metric(values, progress.rows_per_second)
            timeouts.add_metric(values, progress.lock_timeouts)
            pause.add_metric(values, progress.pace["pause_ms"] / 1000)
            for signal in (*SIGNALS, "none"):
                current = progress.pace["limit"] or "none"
                limited.add_metric([*values, signal], 1.0 if current == signal else 0.0)
            throttled.add_metric(values, progress.pace["throttled_seconds"])
            writing.add_metric(values, progress.pace["workers_writing"])
            for choice in JobStatus:
                status.add_metric([*values, choice.value], 1.0 if job.status == choice else 0.0)
            failed.add_metric(
                values, Slice.objects.filter(job=job).aggregate(n=Sum("failed_batches"))["n"] or 0
            )
            durations = [
                ms / 1000
                for ms in Sample.objects.filter(job=job).values_list("duration_ms", flat=True)
            ]
            buckets = [(str(b), sum(1 for d in durations if d <= b)) for b in BUCKETS_SECONDS]
            buckets.append(("+Inf", len(durations)))
            duration.add_metric(values, buckets, sum(durations))
        yield from (done, remaining, rate, status, failed, timeouts, pause, limited, throttled)
        yield writing
        yield duration


registry = CollectorRegistry(auto_describe=False)
registry.register(BackfillCollector())


@require_GET
@token_or_viewer
def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
