"""What error pages may show of the settings and of the traceback's variables."""

import re
from collections.abc import ItemsView
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

# `password=...` inside a libpq connection string or a log line.
PASSWORD_IN_TEXT = re.compile(r"(password\s*=\s*)(?:'[^']*'|\S+)", flags=re.IGNORECASE)


class CredentialsFilter(SafeExceptionReporterFilter):
    """Django's filter, hiding URLs and brokers too: `DATABASE_URL`, `REDIS_URL`
    and `CELERY_BROKER_URL` carry passwords in them.

    Traceback variables are cleansed the same way, by name and by dictionary
    key, even with DEBUG on: a connection that fails deep in psycopg has the
    database password in its frames (`conn_params`, `conninfo`), and a
    development page is still a page someone else may see.
    """

    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|BROKER|BACKEND|DATABASE"
        "|CONNINFO|DSN|CREDENTIAL",
        flags=re.IGNORECASE,
    )

    def get_traceback_frame_variables(
        self, request: HttpRequest | None, tb_frame: Any
    ) -> ItemsView[str, Any]:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return {name: self.cleanse_variable(name, value) for name, value in variables}.items()

    def cleanse_variable(self, name: str, value: Any) -> Any:
        cleansed = self.cleanse_setting(name, value)
        if isinstance(cleansed, str):
            return PASSWORD_IN_TEXT.sub(rf"\g<1>{self.cleansed_substitute}", cleansed)
        return cleansed
