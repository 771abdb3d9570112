"""Command-line options for the test suite."""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-docs-screenshot",
        action="store_true",
        help="the browser test also saves the job page to docs/dashboard-job.png",
    )
