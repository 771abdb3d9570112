"""Celery tasks. Thin by design: the work itself lives in the backfill engine."""

from celery import shared_task


@shared_task(name="workers.tasks.ping")
def ping(payload: str = "pong") -> str:
    """Round trip through broker, worker and result backend, for health checks."""
    return payload
