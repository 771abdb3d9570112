"""The project's settings with the example tables installed."""

from project.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "examples"]  # noqa: F405
