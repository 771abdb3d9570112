"""Command-line options for the test suite."""

import psycopg
import pytest
from django.conf import settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-docs-screenshot",
        action="store_true",
        help="the browser test also saves the job page to docs/dashboard-job.png",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which PostgreSQL the run used: the suite runs on more than one version."""
    db = settings.DATABASES["default"]
    try:
        with psycopg.connect(
            host=db["HOST"],
            port=db["PORT"],
            user=db["USER"],
            password=db.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=5,
        ) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        version = row[0] if row else "unknown"
    except psycopg.Error as error:
        version = f"not reachable ({error.__class__.__name__})"
    terminalreporter.write_line(f"PostgreSQL server: {version} at {db['HOST']}:{db['PORT']}")
