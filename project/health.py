"""Health endpoints for load balancers and compose: no login, no session, no detail beyond
what an operator needs to act.

`/healthz`: the process answers. `/readyz`: it can serve, PostgreSQL and the
broker answer and every migration is applied, but a contract migration
waiting for its backfill (between expand and contract the service is meant
to run: its job is to finish that backfill).
"""

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from backfill import EnforceNotNull
from workers.checks import broker_errors


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    problems = database_problems() + [
        str(error.msg) for error in broker_errors(settings.CELERY_BROKER_URL)
    ]
    return JsonResponse(
        {"ready": not problems, "problems": problems}, status=503 if problems else 200
    )


def database_problems() -> list[str]:
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return [f"PostgreSQL cannot be reached: {first}"]
    waiting = [m for m, backwards in plan if not backwards and not is_contract(m)]
    if waiting:
        names = ", ".join(f"{m.app_label}.{m.name}" for m in waiting[:5])
        return [f"{len(waiting)} migrations not applied ({names}): run migrate_with_timeouts"]
    return []


def is_contract(migration: object) -> bool:
    """A migration of contract steps only, which waits for its backfill to finish."""
    operations = getattr(migration, "operations", [])
    return bool(operations) and all(isinstance(op, EnforceNotNull) for op in operations)
