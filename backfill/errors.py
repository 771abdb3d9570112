"""Errors the engine raises for callers to show; each message says what to do."""


class BackfillError(Exception):
    """Base class: a refused action, shown to the user as one line."""


class UnknownDefinition(BackfillError):
    pass


class InvalidTransition(BackfillError):
    pass


class ActiveJobExists(BackfillError):
    pass


class NoJob(BackfillError):
    pass


class NotConfigured(BackfillError):
    pass


class UnsupportedKey(BackfillError):
    pass


class DispatcherUnavailable(BackfillError):
    pass
