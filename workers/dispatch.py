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

    def dispatch(self, slice_id: int, delay: float = 0.0) -> None:
        # Routed by CELERY_TASK_ROUTES. A countdown is seconds (a back-off, a
        # paced stop), far below the broker's visibility timeout.
        if delay > 0:
            run_slice.apply_async(args=(slice_id,), countdown=delay)
        else:
            run_slice.apply_async(args=(slice_id,))
