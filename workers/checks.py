"""Whether PostgreSQL and the broker answer, in one clear line each.

The database check is a system check: it runs with every management command,
so a wrong DATABASE_URL gives one line instead of a hang or a traceback. The
broker is checked only where a command needs it (starting or steering a job
through Celery, `/readyz`): `migrate`, `check`, `backfill check` and
`backfill run --sync` work with Redis down.

A worker also refuses to start on wrong BACKFILL_* settings
(`refuse_wrong_settings`): Celery runs the system checks but ignores them.
"""

from collections.abc import Sequence
from typing import Any

import redis
from celery.signals import worker_init
from django.core.checks import CheckMessage, Error, register
from django.db import DatabaseError, connection
from kombu.utils.url import maybe_sanitize_url

SERVICES_TAG = "services"


@worker_init.connect
def refuse_wrong_settings(**kwargs: Any) -> None:
    """A worker does not start with a wrong BACKFILL_* setting.

    Celery runs Django's checks as a worker starts but drops what they find,
    so a worker would otherwise run batches with, say, no lock timeout.
    SystemExit, not an error: Celery logs and carries on past an exception
    from a signal handler.
    """
    from backfill.conf import check_settings

    errors = [message for message in check_settings() if message.is_serious()]
    if errors:
        raise SystemExit("; ".join(f"{message.msg} ({message.id})" for message in errors))


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


def broker_problem(url: str) -> str | None:
    """Ping Redis with a short timeout; the URL is shown without its password."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
    except redis.RedisError as exc:
        return f"the Celery broker cannot be reached at {maybe_sanitize_url(url)} ({exc})"
    return None


def broker_errors(url: str) -> list[CheckMessage]:
    problem = broker_problem(url)
    if problem is None:
        return []
    return [
        Error(
            problem[0].upper() + problem[1:] + ".",
            hint="Start Redis or set REDIS_URL.",
            id="services.E002",
        )
    ]
