"""The contract and expand operations' first home, kept so migrations written then still load.

New migrations import them from `backfill` (or `backfill.schema.contract` and `backfill.schema.expand`).
"""

from backfill.schema.contract import BackfillIncomplete, EnforceNotNull, LockNotAcquired
from backfill.schema.expand import AddNullableField

__all__ = ["AddNullableField", "BackfillIncomplete", "EnforceNotNull", "LockNotAcquired"]
