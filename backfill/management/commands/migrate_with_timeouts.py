"""`migrate_with_timeouts`, as django-pg-migration-tools ships it, made safe to run twice
and never to stall the app.

The library's command takes a session advisory lock so that two deploys never
migrate at once, but the second one dies with a traceback. Here it waits for
the first to finish (logging once every few seconds), then runs and finds the
work done; after `--wait-seconds` it stops with one line instead.

Every DDL statement of every migration it applies waits for a gap in the
table's locks instead of queueing behind a long transaction (backfill/schema/gaps.py):
for at most `--gap-wait-seconds`, then it stops naming the session in the
way, or, with `--terminate-blockers`, ends that session and goes on.
"""

import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django_pg_migration_tools.management.commands import migrate_with_timeouts as library

from backfill.management.arguments import non_negative_int
from backfill.schema import gaps

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
        parser.add_argument(
            "--gap-wait-seconds",
            type=non_negative_int,
            default=None,
            help="how long each DDL statement may wait for the sessions in its way "
            "(default BACKFILL_DDL_WAIT_SECONDS, 300)",
        )
        parser.add_argument(
            "--terminate-blockers",
            action="store_true",
            help="after that wait, end the sessions in the way (pg_terminate_backend; client "
            "sessions of this database only) and go on",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        budget = options.pop("wait_seconds")
        gap_wait = options.pop("gap_wait_seconds")
        terminate = options.pop("terminate_blockers") or None
        started = time.monotonic()
        reported = 0.0
        while True:
            try:
                with gaps.waiting(options["database"], gap_wait, terminate):
                    super().handle(*args, **options)
                return
            except gaps.LockNotAcquired as exc:
                raise CommandError(str(exc)) from None
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
