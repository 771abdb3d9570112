"""How slices reach workers, without the engine knowing about Celery.

The engine calls `current().dispatch(slice_id)` after the transaction that
reserved the slice commits. Production names a Celery dispatcher in
BACKFILL_DISPATCHER; `run --sync` and tests swap in `local.LocalQueue` with
`using`.
"""

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol

from django.utils.module_loading import import_string

from backfill import conf
from backfill.errors import NotConfigured


class Dispatcher(Protocol):
    def check(self) -> None:
        """Raise a BackfillError when slices could not reach a worker now."""

    def dispatch(self, slice_id: int, delay: float = 0.0) -> None:
        """Send the slice to a worker, to be worked `delay` seconds from now at the earliest."""


def ready() -> Dispatcher:
    """The current dispatcher, once it says it can deliver: called before an action
    that dispatches changes anything."""
    dispatcher = current()
    dispatcher.check()
    return dispatcher


_override: ContextVar[Dispatcher | None] = ContextVar("backfill_dispatcher", default=None)


@contextlib.contextmanager
def using(dispatcher: Dispatcher) -> Iterator[Dispatcher]:
    token = _override.set(dispatcher)
    try:
        yield dispatcher
    finally:
        _override.reset(token)


def current() -> Dispatcher:
    override = _override.get()
    if override is not None:
        return override
    path = conf.current().dispatcher
    if not path:
        raise NotConfigured(
            "no BACKFILL_DISPATCHER is configured: set it in settings, "
            "or run the backfill in-process with `manage.py backfill run NAME --sync`"
        )
    dispatcher_class = import_string(str(path))
    dispatcher: Dispatcher = dispatcher_class()
    return dispatcher
