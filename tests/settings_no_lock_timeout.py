"""The test settings with the batches' lock timeout turned off: a worker must refuse them."""

from tests.settings import *  # noqa: F403

BACKFILL_LOCK_TIMEOUT_MS = 0
