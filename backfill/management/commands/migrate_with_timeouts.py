"""`migrate_with_timeouts`, as django-pg-migration-tools ships it, made safe to run twice.

The library's command takes a session advisory lock so that two deploys never
migrate at once, but the second one dies with a traceback. Here it waits for
the first to finish (logging once every few seconds), then runs and finds the
work done; after `--wait-seconds` it stops with one line instead.
"""

import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django_pg_migration_tools.management.commands import migrate_with_timeouts as library

from backfill.arguments import non_negative_int

POLL_SECONDS = 1.0
REPORT_EVERY_SECONDS = 10.0


class Command(library.Command):
    help = library.Command.help + " Waits while another run of this command holds the database."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--wait-seconds",
            type=non_negative_int,
            default=600,
            help="how long to wait for another migrate_with_timeouts to finish (default 600)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        budget = options.pop("wait_seconds")
        started = time.monotonic()
        reported = 0.0
        while True:
            try:
                super().handle(*args, **options)
                return
            except library.LockAlreadyAcquired:
                waited = time.monotonic() - started
                if waited >= budget:
                    raise CommandError(
                        f"another migrate_with_timeouts has held the database for over "
                        f"{budget} s; nothing was changed here. Run this again once it ends."
                    ) from None
                if waited - reported >= REPORT_EVERY_SECONDS or reported == 0.0:
                    self.stderr.write(
                        "another migrate_with_timeouts is running; waiting for it to finish"
                    )
                    reported = max(waited, 1e-9)
                time.sleep(POLL_SECONDS)
