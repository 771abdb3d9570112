"""The Celery dispatcher named in BACKFILL_DISPATCHER."""

from workers.tasks import run_slice


class CeleryDispatcher:
    def dispatch(self, slice_id: int) -> None:
        run_slice.apply_async(args=(slice_id,))  # routed by CELERY_TASK_ROUTES
