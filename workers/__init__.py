"""The Celery side of the service: tasks that run slices and the sweeper."""
