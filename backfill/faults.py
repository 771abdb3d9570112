"""What went wrong in a batch, and what it costs the slice: decided in one place.

Fill batches and revert batches fail the same ways (a row the app holds, a
statement cut off, a lost connection, a bug) and are treated the same way.
"""

import enum
import traceback
from dataclasses import dataclass

# PostgreSQL's SQLSTATEs for the two faults that are not bugs.
LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"


class Fault(enum.StrEnum):
    LOCK_TIMEOUT = "lock_timeout"  # the app holds rows the batch needs: contention
    STATEMENT_TIMEOUT = "statement_timeout"  # the batch is too big for the budget
    ERROR = "error"  # anything else: a deadlock, a lost connection, a bug


def classify(exc: BaseException) -> Fault:
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or getattr(exc, "sqlstate", None)
    if sqlstate == LOCK_NOT_AVAILABLE:
        return Fault.LOCK_TIMEOUT
    if sqlstate == QUERY_CANCELED:
        return Fault.STATEMENT_TIMEOUT
    return Fault.ERROR


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip()}"


def with_traceback(exc: BaseException) -> str:
    """The one-line description, then the traceback (folded on the dashboard)."""
    trace = "".join(traceback.format_exception(exc)).strip()
    return f"{describe(exc)}\n\n{trace}"


@dataclass(frozen=True)
class Failure:
    """One failed batch, as the slice records it.

    `attempt` is what it adds to the slice's attempts: 1 for a fault, 0 for the
    first fault after taking the lease (taking it already counted, in case the
    worker died instead), -1 for contention right after taking it (the worker
    is alive and nothing failed, so that count is given back). `next_size` is
    stored so a continuation does not start again at the size that failed.
    """

    error: str
    attempt: int = 1
    lock_timeout: bool = False
    next_size: int | None = None

    @classmethod
    def of(
        cls, exc: BaseException, attempt_counted: bool, next_size: int | None = None
    ) -> "Failure":
        contention = classify(exc) is Fault.LOCK_TIMEOUT
        attempt = (0 if attempt_counted else 1) - (1 if contention else 0)
        return cls(with_traceback(exc), attempt, contention, next_size)
