"""A reusable engine that fills a column of a large table in the background.

What apps import: the definition base classes and `register`, for their
`backfills.py`, and the migration operations of the expand and contract
steps. Each is loaded on first use, so importing the package (as the latency
probe's process does, `python -m backfill.pacing.probe`) loads no Django.
Migrations written by Django name these operations `backfill.<Name>`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backfill.registry import Definition, ExpressionDefinition, register
    from backfill.schema.contract import BackfillIncomplete, EnforceNotNull
    from backfill.schema.expand import AddNullableField, GuardFilledColumn

# Each public name and the module that holds it.
PUBLIC = {
    "Definition": "backfill.registry",
    "ExpressionDefinition": "backfill.registry",
    "register": "backfill.registry",
    "AddNullableField": "backfill.schema.expand",
    "GuardFilledColumn": "backfill.schema.expand",
    "BackfillIncomplete": "backfill.schema.contract",
    "EnforceNotNull": "backfill.schema.contract",
}

__all__ = [
    "AddNullableField",
    "BackfillIncomplete",
    "Definition",
    "EnforceNotNull",
    "ExpressionDefinition",
    "GuardFilledColumn",
    "register",
]


def __getattr__(name: str) -> Any:
    if name not in PUBLIC:
        raise AttributeError(f"module 'backfill' has no attribute {name!r}")
    return getattr(import_module(PUBLIC[name]), name)
