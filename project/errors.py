"""What error pages may show of the settings."""

import re

from django.views.debug import SafeExceptionReporterFilter


class CredentialsFilter(SafeExceptionReporterFilter):
    """Django's filter, hiding URLs and brokers too: `DATABASE_URL`, `REDIS_URL`
    and `CELERY_BROKER_URL` carry passwords in them."""

    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|BROKER|BACKEND|DATABASE",
        flags=re.IGNORECASE,
    )
