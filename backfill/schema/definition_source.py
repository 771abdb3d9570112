"""The definition `makebackfill` appends to an app's backfills.py, written into its source.

The file is the developer's: it is edited as text, not regenerated, so its
comments and layout survive; `ast` only finds where the imports are.
"""

from __future__ import annotations

import ast
import json
import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.apps import apps
from django.db import models


@dataclass(frozen=True)
class DefinitionsSource:
    path: Path
    text: str

    def write(self) -> Path:
        self.path.write_text(self.text)
        return self.path


def definitions_source(
    model: type[models.Model], field: models.Field[Any, Any], name: str, expression: str | None
) -> DefinitionsSource:
    """The app's backfills.py with the new definition appended (and its imports)."""
    path = Path(apps.get_app_config(model._meta.app_label).path) / "backfills.py"
    existing = path.read_text() if path.exists() else '"""Backfill definitions."""\n'
    base = "ExpressionDefinition" if expression is not None else "Definition"
    needed = {"register", base}
    text = with_imports(existing, needed)
    return DefinitionsSource(
        path, text.rstrip("\n") + "\n\n\n" + definition_class(model, field, name, expression)
    )


def with_imports(source: str, names: set[str]) -> str:
    """`source` importing `names` from `backfill`: added to its one-line
    `from backfill import …`, or as a line after its last top-level import."""
    tree = ast.parse(source)
    from_backfill = [
        node for node in tree.body if isinstance(node, ast.ImportFrom) and node.module == "backfill"
    ]
    imported = {alias.asname or alias.name for node in from_backfill for alias in node.names}
    missing = names - imported
    if not missing:
        return source
    lines = source.splitlines(keepends=True)
    plain = [node for node in from_backfill if all(alias.asname is None for alias in node.names)]
    if plain and plain[0].end_lineno == plain[0].lineno:
        at = plain[0].lineno - 1
        lines[at] = f"from backfill import {', '.join(sorted(imported | missing))}\n"
        return "".join(lines)
    line = f"from backfill import {', '.join(sorted(missing))}\n"
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    if imports:
        at = max(node.end_lineno or node.lineno for node in imports)
    else:
        docstring = tree.body[0] if tree.body and is_docstring(tree.body[0]) else None
        at = (docstring.end_lineno or 0) if docstring is not None else 0
        line = ("\n" if at else "") + line
    return "".join(lines[:at]) + line + "".join(lines[at:])


def is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def definition_class(
    model: type[models.Model], field: models.Field[Any, Any], name: str, expression: str | None
) -> str:
    class_name = "".join(part.capitalize() for part in name.split("_"))
    if keyword.iskeyword(class_name) or not class_name.isidentifier():
        class_name = f"Backfill{class_name}"
    base = "ExpressionDefinition" if expression is not None else "Definition"
    head = (
        "@register\n"
        f"class {class_name}({base}):\n"
        f"    name = {literal(name)}\n"
        f"    model_label = {literal(str(model._meta.label))}\n"
        f"    field_name = {literal(field.name)}\n"
        f"    description = {literal(f'Fill {model._meta.label}.{field.name}.')}\n"
    )
    if expression is not None:
        return head + f"    expression = {literal(expression)}\n"
    return head + (
        "    # Model fields read with each pending row, passed to fill() after the key.\n"
        "    columns = ()\n"
        "\n"
        "    def fill(self, cursor, rows):\n"
        '        """Fill these pending rows, locked for this batch; return how many were filled.\n'
        "\n"
        "        Each row is (key, *columns). Write them in one set-based statement,\n"
        "        for example UPDATE … FROM unnest(%s::bigint[], …) keyed on the\n"
        "        primary key, so a batch is one round trip whatever its size. Leave a\n"
        "        row's column NULL only if it must stay pending. Declare\n"
        "        `partition_key` if filling a row writes rows shared with others\n"
        "        (see README, Writing your own definition).\n"
        '        """\n'
        f"        raise NotImplementedError({literal(f'{model._meta.label}.{field.name}: write fill() in backfills.py')})\n"
    )


def literal(text: str) -> str:
    """A Python string literal in double quotes, as the project's formatter writes them."""
    return json.dumps(text, ensure_ascii=False)
