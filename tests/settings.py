"""Settings for the test run: the project's, with a broker database of its own.

Worker processes started by the tests load this module too, so producer and
consumer always agree. Redis database 15 keeps test messages away from a demo
running on the same server.
"""

import os

from django.core.exceptions import ImproperlyConfigured

# Set before the project's settings are read, which refuse to start without one
# when DEBUG is off (as it is here, and in production).
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-any-deployment-0123456789")

from examples.settings import *  # noqa: F403

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Under pytest-xdist each worker (gw0, gw1...) takes a broker database of its own
# from TEST_REDIS_DBS (15, 14, 13, 12 unless set): one worker's purge, sweeper or
# Celery workers never see another's messages, so a worker beyond the list stops
# the run rather than share one. Processes a test starts get the result in
# TEST_REDIS_URL (worker_environment), which they take as it is.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _XDIST_WORKER.startswith("gw") and "TEST_REDIS_PER_WORKER" not in os.environ:
    _DBS = os.environ.get("TEST_REDIS_DBS", "15,14,13,12").split(",")
    _worker_index = int(_XDIST_WORKER[2:])
    if _worker_index >= len(_DBS):
        raise ImproperlyConfigured(
            f"pytest-xdist worker {_XDIST_WORKER} has no Redis database of its own: "
            f"TEST_REDIS_DBS={','.join(_DBS)} names {len(_DBS)}; name one per worker (-n)"
        )
    REDIS_URL = f"{REDIS_URL.rsplit('/', 1)[0]}/{_DBS[_worker_index]}"
    os.environ["TEST_REDIS_PER_WORKER"] = REDIS_URL
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Short leases and back-offs so recovery paths run in seconds, not minutes.
BACKFILL_LEASE_SECONDS = 4
# Small batches: jobs over tens of thousands of rows last long enough to be
# paused, cancelled and killed mid-way.
BACKFILL_MAX_BATCH_SIZE = 2000
BACKFILL_BATCH_SIZE = 1000
BACKFILL_TASK_SECONDS = 2.0
BACKFILL_BACKOFF_SECONDS = 0.05
# Tests that are not about pacing must not depend on how loaded the machine is:
# they start their jobs unpaced; the pacing tests turn it on per job (--pace auto).
BACKFILL_PACE = False
BACKFILL_MAX_BACKOFF_SECONDS = 0.5
# An old app version's inserts count as stopped after 2 s without one, not 30.
BACKFILL_ARRIVALS_QUIET_SECONDS = 2.0
CELERY_BEAT_SCHEDULE["backfill-sweep"]["schedule"] = 1.0  # noqa: F405

# Templates name static files without a collectstatic run having made a manifest.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
