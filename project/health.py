"""Health endpoints for load balancers and compose: no login, no session.

`/healthz`: the process answers. `/readyz`: it can serve, PostgreSQL and the
broker answer and every migration is applied, but a contract migration
waiting for its backfill (between expand and contract the service is meant
to run: its job is to finish that backfill). Its status code is for everyone;
what is wrong (hosts, ports, roles, migration names) only for staff and the
API token.

Compose's health check asks `http://127.0.0.1:8000/readyz` from inside the
container, whatever host names production allows: a request for a health
path from a loopback address is answered before anything checks its Host.
"""

from collections.abc import Callable
from ipaddress import ip_address

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from backfill import EnforceNotNull
from backfill.web.permissions import has_token
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
    status = 503 if problems else 200
    if not sees_detail(request):
        return JsonResponse({"ready": not problems}, status=status)
    return JsonResponse({"ready": not problems, "problems": problems}, status=status)


def sees_detail(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return has_token(request) or bool(user is not None and user.is_active and user.is_staff)


HEALTH_VIEWS = {"/healthz": healthz, "/readyz": readyz}


def is_loopback(address: str) -> bool:
    try:
        return ip_address(address).is_loopback
    except ValueError:
        return False


class LoopbackHealthMiddleware:
    """Answers the health paths asked from this machine under a host name that is
    not allowed (and before the HTTPS redirect): a check inside the container
    needs no public host name. Such a request gets no session and so only the
    status (or the detail, with the token): a proxy on the same machine
    forwards strangers from a loopback address too. Any other request takes
    the usual way.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = HEALTH_VIEWS.get(request.path_info)
        if view is not None and is_loopback(request.META.get("REMOTE_ADDR", "")):
            try:
                request.get_host()
            except DisallowedHost:
                return view(request)
        return self.get_response(request)


def database_problems() -> list[str]:
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return [f"PostgreSQL cannot be reached: {first}"]
    waiting = [m for m, backwards in plan if not backwards and not waits_for_backfill(m, plan)]
    if waiting:
        names = ", ".join(f"{m.app_label}.{m.name}" for m in waiting[:5])
        return [f"{len(waiting)} migrations not applied ({names}): run migrate_with_timeouts"]
    return []


def waits_for_backfill(migration: Migration, plan: list[tuple[Migration, bool]]) -> bool:
    """A contract migration waiting for its backfill, or a merge migration (no
    operations) that joins one: neither has anything to apply before the backfill ends."""
    if is_contract(migration):
        return True
    contracts = {(m.app_label, m.name) for m, _ in plan if is_contract(m)}
    return not migration.operations and any(
        tuple(dependency) in contracts for dependency in migration.dependencies
    )


def is_contract(migration: object) -> bool:
    """A migration of contract steps only, which waits for its backfill to finish."""
    operations = getattr(migration, "operations", [])
    return bool(operations) and all(isinstance(op, EnforceNotNull) for op in operations)
