"""Who may see and do what on the dashboard, the JSON API and /metrics.

Django permissions, not `is_staff`: seeing jobs, steering them and reverting
them are separate grants, given to users or groups in the admin. Reverting
deletes what a job wrote (for admin groups: the groups), so it is a permission
of its own. Superusers have every permission. The CLI is for operators with
shell access and asks none of this.

Monitoring systems use `Authorization: Bearer <BACKFILL_API_TOKEN>`: they read
figures, never other sessions' SQL or error tracebacks.
"""

import functools
import hmac
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse

from backfill import conf
from backfill.engine.lifecycle import Action

View = Callable[..., HttpResponse]

VIEW = "backfill.view_job"
CHANGE = "backfill.change_job"
REVERT = "backfill.revert_job"

START = CHANGE
ACTION_PERMISSIONS: dict[Action, str] = {
    Action.START: START,
    Action.PAUSE: CHANGE,
    Action.RESUME: CHANGE,
    Action.CANCEL: CHANGE,
    Action.RETRY: CHANGE,
    Action.REVERT: REVERT,
}


def may(user: Any, permission: str) -> bool:
    """Inactive and anonymous users have no permission (Django's backends say so)."""
    return bool(user is not None and user.has_perm(permission))


def may_act(user: Any, action: Action) -> bool:
    permission = ACTION_PERMISSIONS.get(action)
    return permission is not None and may(user, permission)


def allowed_actions(user: Any, actions: Iterable[Action]) -> list[Action]:
    """The actions the lifecycle offers that this user may also take."""
    return [action for action in actions if may_act(user, action)]


def permission_required(permission: str) -> Callable[[View], View]:
    """Anonymous visitors go to the login page; signed-in users without it get 403."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not may(request.user, permission):
                raise PermissionDenied(f"{permission} required")
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def bearer_matches(header: str) -> bool:
    """`Bearer <BACKFILL_API_TOKEN>`, the scheme in any case (RFC 9110), the token
    compared in constant time; any other header, malformed or in any script, is
    simply not a match."""
    token = str(conf.current().api_token or "")
    scheme, _, given = header.strip().partition(" ")
    given = given.strip()
    if not token or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(token.encode(), given.encode())


def has_token(request: HttpRequest) -> bool:
    return bearer_matches(request.headers.get("Authorization", ""))


def token_or_viewer(view: View) -> View:
    """For monitoring systems (the token) and for people allowed to see jobs."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if has_token(request) or may(getattr(request, "user", None), VIEW):
            return view(request, *args, **kwargs)
        return JsonResponse(
            {"error": f"a session with {VIEW} or the API token is required"}, status=403
        )

    return wrapped


def for_caller(request: HttpRequest, progress: dict[str, Any]) -> dict[str, Any]:
    """A job's progress as this caller may see it.

    People see everything, with the actions offered narrowed to those they
    may take. The token sees figures and may take no action (its list is
    empty): no SQL text of the sessions holding rows, no error tracebacks
    (whether a slice has an error stays visible).
    """
    user = getattr(request, "user", None)
    if may(user, VIEW):
        progress["actions"] = [
            a.value for a in allowed_actions(user, (Action(name) for name in progress["actions"]))
        ]
        return progress
    held = [{k: v for k, v in row.items() if k != "query"} for row in progress["held"]]
    slices = [
        {
            **s,
            "held": [{k: v for k, v in row.items() if k != "query"} for row in s["held"]],
            "last_error": "error (details on the dashboard)" if s["last_error"] else "",
        }
        for s in progress["slices"]
    ]
    return {**progress, "actions": [], "held": held, "slices": slices}
