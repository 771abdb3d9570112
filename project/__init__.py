"""Project wiring: settings, URLs and the Celery app.

The Celery app is imported here so that `@shared_task` functions bind to it
whenever Django starts, in web processes as well as in workers.
"""

from project.celery import app as celery_app

__all__ = ["celery_app"]
