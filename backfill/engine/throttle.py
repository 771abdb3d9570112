"""How big the next batch is, and how long to wait after a failure.

Kept apart from the runner so the policy can be read and tested alone.
"""

import random
from dataclasses import dataclass

from backfill.conf import BatchLimits


@dataclass(frozen=True)
class BatchSizer:
    limits: BatchLimits

    def next_size(self, size: int, rows: int, seconds: float, calm: bool = False) -> int:
        """Steer toward the target duration: half of the way there per step,
        growing at most fourfold, shrinking at most by a quarter.

        Noise in one batch should not swing the size, but a batch far under
        its target should not take a dozen steps to get there either: a
        batch of a quarter of the target grows 2.5-fold, and even fourfold
        it stays under the target. A short batch (the end of a slice) says
        nothing about speed: only batches that filled most of their size
        move the size up. While nobody has waited on the job's batches
        (`calm`), the target is the longer calm one.
        """
        if seconds <= 0:
            return size
        ratio = self.target(calm) / seconds
        if ratio > 1 and rows < size * 0.9:
            return self.clamp(size)
        step = 1 + (max(0.5, ratio) - 1) * 0.5
        return self.clamp(int(size * min(4.0, step)))

    def after_waiters(self, size: int, seconds: float) -> int:
        """Sessions queued behind this batch: straight back to the short target.

        They waited as long as the batch ran, so the next one is cut to what
        the short target allows at once, not half of the way there.
        """
        if seconds <= self.limits.target_seconds:
            return self.clamp(size)
        return self.clamp(int(size * self.limits.target_seconds / seconds))

    def target(self, calm: bool) -> float:
        if calm and self.limits.calm_target_seconds:
            return max(self.limits.calm_target_seconds, self.limits.target_seconds)
        return self.limits.target_seconds

    def after_timeout(self, size: int) -> int:
        """A batch cut off by statement_timeout is retried at half the size."""
        return self.clamp(size // 2)

    def clamp(self, size: int) -> int:
        return max(self.limits.min_size, min(self.limits.max_size, size))


def backoff_seconds(limits: BatchLimits, attempt: int) -> float:
    """Exponential backoff with jitter, so retrying workers do not collide again."""
    base = min(limits.max_backoff_seconds, limits.backoff_seconds * 2 ** max(0, attempt - 1))
    return float(base * random.uniform(0.5, 1.0))
