"""A reusable engine that fills a column of a large table in the background.

What apps import: the definition base classes and `register`, for their
`backfills.py`, and the migration operations. Nothing here loads models.
"""

from typing import Any

from backfill.registry import Definition, ExpressionDefinition, register

__all__ = ["Definition", "EnforceNotNull", "ExpressionDefinition", "register"]


def __getattr__(name: str) -> Any:
    """`backfill.EnforceNotNull`, loaded on first use: it needs the app registry ready."""
    if name == "EnforceNotNull":
        from backfill.operations import EnforceNotNull

        return EnforceNotNull
    raise AttributeError(f"module 'backfill' has no attribute {name!r}")
