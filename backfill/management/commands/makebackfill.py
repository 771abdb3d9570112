"""`manage.py makebackfill app_label.Model field`: expand, definition and contract, written.

Exit codes: 0 written, 2 refused (one line; nothing written).
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backfill.schema import scaffold


class Command(BaseCommand):
    help = (
        "Write the expand migration, the backfill definition and the contract migration "
        "for a required field declared on a model but not yet in the database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", help="app_label.ModelName")
        parser.add_argument(
            "field", help="the field, declared as it must end (required, no default)"
        )
        parser.add_argument("--name", help="the backfill's name (default: model_field)")
        parser.add_argument(
            "--expression",
            help="an SQL expression over the row's columns that computes the value "
            "(default: a Definition skeleton whose fill() you write)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        request = scaffold.Request(
            model_label=options["model"],
            field_name=options["field"],
            name=options["name"],
            expression=options["expression"],
        )
        try:
            written = scaffold.scaffold(request)
        except scaffold.ScaffoldRefused as refused:
            raise CommandError(str(refused), returncode=2) from None
        for path in written.paths:
            self.stdout.write(f"wrote {path}")
        self.stdout.write(
            f"next: `migrate` (expand), `backfill plan {written.name}`, "
            f"`backfill start {written.name}`, then `migrate` again (contract)"
        )
