"""The write guard operation's first home, kept so migrations written then still load.

New migrations import it from `backfill` (or `backfill.schema.expand`).
"""

from backfill.schema.expand import GuardFilledColumn

__all__ = ["GuardFilledColumn"]
