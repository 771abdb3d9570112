"""The username login throttling records, cut to fit.

django-axes stores the username of every failed login in varchar(255)
columns; a longer one POSTed to a login page would fail the insert and
answer 500 instead of the failed-login page. No account has a username
longer than auth's User.username (150 characters), so cutting there loses
nothing: every longer name is refused anyway, and they share one counter.
"""

from typing import Any

from django.http import HttpRequest

USERNAME_MAX_LENGTH = 150  # django.contrib.auth.models.User.username
FIELD = "username"


def throttled_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """axes' own choice (the credentials, else the POSTed field), at most 150 characters."""
    given = credentials.get(FIELD) if credentials else request.POST.get(FIELD)
    return None if given is None else str(given)[:USERNAME_MAX_LENGTH]
