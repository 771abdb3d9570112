"""The Celery dispatcher named in BACKFILL_DISPATCHER."""

from django.conf import settings

from backfill.errors import DispatcherUnavailable
from workers.checks import broker_problem
from workers.tasks import run_slice


class CeleryDispatcher:
    def check(self) -> None:
        """Refuse, before anything is changed, when no message could reach a worker."""
        problem = broker_problem(settings.CELERY_BROKER_URL)
        if problem is not None:
            raise DispatcherUnavailable(
                f"{problem}; start Redis, or run the backfill in this process "
                "with `manage.py backfill run NAME --sync`. Nothing was changed."
            )

    def dispatch(self, slice_id: int) -> None:
        run_slice.apply_async(args=(slice_id,))  # routed by CELERY_TASK_ROUTES
