"""A reusable engine that fills a column of a large table in the background.

What apps import: the definition base classes and `register`, for their
`backfills.py`, and the migration operations of the expand and contract
steps. Nothing here loads models or the engine's runtime.
"""

from backfill.registry import Definition, ExpressionDefinition, register
from backfill.schema.contract import BackfillIncomplete, EnforceNotNull
from backfill.schema.expand import AddNullableField, GuardFilledColumn

__all__ = [
    "AddNullableField",
    "BackfillIncomplete",
    "Definition",
    "EnforceNotNull",
    "ExpressionDefinition",
    "GuardFilledColumn",
    "register",
]
