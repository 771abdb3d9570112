"""A reusable engine that fills a column of a large table in the background.

What apps import: the definition base classes and `register`, for their
`backfills.py`, and the migration operations. Nothing here loads models.
"""

from backfill.registry import Definition, ExpressionDefinition, register

__all__ = ["Definition", "ExpressionDefinition", "register"]
