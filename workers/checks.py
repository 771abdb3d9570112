"""System checks that fail fast when PostgreSQL or Redis cannot be reached.

They run with every management command (and `celery` worker start, through
Django setup), so a wrong DATABASE_URL or REDIS_URL gives one clear line
instead of a hang or a traceback deep inside a task.
"""

from collections.abc import Sequence
from typing import Any

import redis
from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.db import DatabaseError, connection

SERVICES_TAG = "services"


@register(SERVICES_TAG)
def check_database(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        return [
            Error(
                f"PostgreSQL cannot be reached at {connection.settings_dict.get('HOST')}:"
                f"{connection.settings_dict.get('PORT')} ({exc.__class__.__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}).",
                hint="Start PostgreSQL, create the database with `make database`, or set DATABASE_URL.",
                id="services.E001",
            )
        ]
    return []


@register(SERVICES_TAG)
def check_broker(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    return broker_errors(settings.CELERY_BROKER_URL)


def broker_errors(url: str) -> list[CheckMessage]:
    """Ping Redis with a short timeout; kept apart so tests can aim it anywhere."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
    except redis.RedisError as exc:
        return [
            Error(
                f"The Celery broker cannot be reached at {url} ({exc}).",
                hint="Start Redis or set REDIS_URL.",
                id="services.E002",
            )
        ]
    return []
