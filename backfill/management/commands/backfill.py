"""`manage.py backfill ...`: start, watch and steer backfill jobs.

Exit codes a script can trust: 0 done or passed, 1 a job failed or a check did
not pass, 2 bad usage or a refused action (nothing changed), 3 the job watched
(`status --watch`, `run`, `revert`) was paused: not done, and not failed.
"""

import getpass
import json
import sys
import time
from argparse import Namespace
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backfill.engine import checker, plan, service
from backfill.engine.held import describe as describe_held
from backfill.engine.lifecycle import Action
from backfill.engine.options import JobOptions
from backfill.engine.progress import Progress, job_progress
from backfill.errors import BackfillError
from backfill.management import terminal
from backfill.management.arguments import (
    non_negative_int,
    non_negative_number,
    positive_int,
    seconds,
)
from backfill.models import Job, JobStatus
from backfill.registry import all_definitions, get_definition
from backfill.statuses import FINISHED_STATUSES

USAGE = 2
NOT_DONE = 1
PAUSED = 3


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


class Command(BaseCommand):
    help = "Start, watch and steer background backfills."

    def add_arguments(self, parser: CommandParser) -> None:
        named = CommandParser(add_help=False)
        named.add_argument("name", help="backfill definition name (see `backfill list`)")
        tuning = CommandParser(add_help=False)
        tuning.add_argument("--batch-size", type=positive_int, help="rows per batch to start with")
        tuning.add_argument("--concurrency", type=positive_int, help="slices worked at once")
        tuning.add_argument(
            "--pause-ms", type=non_negative_int, help="pause between batches (pacing's floor)"
        )
        tuning.add_argument(
            "--pace",
            choices=["auto", "off"],
            help="auto: slow down when the database's health asks (default); "
            "off: only --pause-ms, for a maintenance window",
        )
        tuning.add_argument(
            "--max-latency-ratio",
            type=non_negative_number,
            metavar="RATIO",
            help="the app's commit latency against its baseline (0: no budget)",
        )
        tuning.add_argument(
            "--max-replica-lag",
            type=seconds,
            metavar="SECONDS",
            help="replay lag of any standby, e.g. 5s (0: no budget)",
        )
        tuning.add_argument(
            "--max-transaction-age",
            type=seconds,
            metavar="SECONDS",
            help="the oldest transaction open on the database (0: no budget)",
        )
        tuning.add_argument(
            "--max-wal-rate",
            type=non_negative_number,
            metavar="MB_PER_SECOND",
            help="WAL written per second (0, the default: no cap)",
        )
        as_json = CommandParser(add_help=False)
        as_json.add_argument("--json", action="store_true", help="machine-readable output")

        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("list", help="definitions and their latest job", parents=[as_json])
        sub.add_parser("start", help="create a job run by the workers", parents=[named, tuning])
        status = sub.add_parser("status", help="progress of jobs", parents=[as_json])
        status.add_argument("name", nargs="?", help="one definition (default: all)")
        status.add_argument("--watch", action="store_true", help="refresh until the job ends")
        for action in (Action.PAUSE, Action.RESUME, Action.CANCEL, Action.RETRY):
            sub.add_parser(action, help=f"{action} the latest job", parents=[named])
        sub.add_parser(
            "check",
            help="exit 0 when nothing is left and verification passes",
            parents=[named, as_json],
        )
        run = sub.add_parser("run", help="start and watch until done", parents=[named, tuning])
        run.add_argument(
            "--sync", action="store_true", help="run in this process, without Celery or Redis"
        )
        revert = sub.add_parser(
            "revert", help="undo the latest job's fill and watch until done", parents=[named]
        )
        revert.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        revert.add_argument(
            "--sync", action="store_true", help="revert in this process, without Celery or Redis"
        )
        sub.add_parser(
            "reconcile", help="re-dispatch expired slices and finish done jobs (the sweeper)"
        )
        prune = sub.add_parser(
            "prune", help="drop the write logs of jobs that can no longer be reverted"
        )
        prune.add_argument("name", nargs="?", help="one definition (default: all)")
        sub.add_parser(
            "plan",
            help="what a backfill would do here: plan, sample rate, projection (changes nothing)",
            parents=[named, as_json],
        )

    def handle(self, *args: Any, **options: Any) -> None:
        handler: Callable[[Namespace], int] = getattr(self, f"do_{options['action']}")
        try:
            code = handler(Namespace(**options))
        except BackfillError as exc:
            raise CommandError(str(exc), returncode=USAGE) from None
        if code:
            sys.exit(code)

    def job_options(self, options: Namespace) -> JobOptions:
        return JobOptions.build(
            options.batch_size,
            options.concurrency,
            options.pause_ms,
            pace=None if options.pace is None else options.pace == "auto",
            budgets={
                "latency_ratio": options.max_latency_ratio,
                "replica_lag_seconds": options.max_replica_lag,
                "transaction_age_seconds": options.max_transaction_age,
                "wal_mb_per_second": options.max_wal_rate,
            },
        )

    def do_list(self, options: Namespace) -> int:
        rows = []
        for definition in all_definitions():
            job = Job.objects.latest_for(definition.name)
            rows.append(
                {
                    "name": definition.name,
                    "target": definition.label,
                    "description": definition.description,
                    "latest_job": job.pk if job else None,
                    "status": job.status if job else None,
                }
            )
        if options.json:
            self.stdout.write(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            state = (
                f"job #{row['latest_job']} {row['status']}" if row["latest_job"] else "never run"
            )
            self.stdout.write(f"{row['name']:<20} {row['target']:<40} {state}")
        return 0

    def do_plan(self, options: Namespace) -> int:
        made = plan.make_plan(get_definition(options.name))
        self.stdout.write(made.as_json() if options.json else plan.describe(made))
        return 0

    def do_start(self, options: Namespace) -> int:
        job = service.start(options.name, actor(), self.job_options(options))
        self.stdout.write(
            f"Started {job.definition} job #{job.pk}: {job.slices.count()} slices, "
            f"concurrency {job.concurrency}, about {job.rows_total:,} rows. "
            f"Watch it with `manage.py backfill status {job.definition} --watch`."
        )
        return 0

    def do_status(self, options: Namespace) -> int:
        if options.watch:
            if not options.name:
                raise BackfillError("status --watch needs a backfill name")
            return self.watch(service.latest_job(options.name), options.json)
        jobs = self.jobs_for_status(options.name)
        if options.json:
            payload = [job_progress(job).as_dict() for job in jobs]
            self.stdout.write(json.dumps(payload[0] if options.name else payload, indent=2))
            return 0
        if not jobs:
            self.stdout.write("No backfill has run yet.")
        for job in jobs:
            progress = job_progress(job)
            self.stdout.write(terminal.progress_line(progress))
            if job.error:
                self.stdout.write(f"  error: {job.error}")
            if progress.held:
                self.stdout.write(f"  waiting on {describe_held(progress.held)}")
        return 0

    def jobs_for_status(self, name: str | None) -> list[Job]:
        if name:
            return [service.latest_job(name)]
        jobs = (Job.objects.latest_for(d.name) for d in all_definitions())
        return [job for job in jobs if job is not None]

    def watch(self, job: Job, as_json: bool = False) -> int:
        while True:
            job.refresh_from_db()
            progress = job_progress(job)
            self.show(progress, as_json, final=job.status in FINISHED_STATUSES)
            if job.status in FINISHED_STATUSES or job.status == JobStatus.PAUSED:
                return self.exit_code(job)
            time.sleep(1)

    def show(self, progress: Progress, as_json: bool, final: bool = False) -> None:
        if as_json:
            self.stdout.write(json.dumps(progress.as_dict()))
            return
        line = terminal.progress_line(progress)
        if self.stdout.isatty():
            self.stdout.write("\r" + line, ending="\n" if final else "")
            self.stdout.flush()
        else:
            self.stdout.write(line)

    def exit_code(self, job: Job) -> int:
        if job.status in (JobStatus.SUCCEEDED, JobStatus.REVERTED):
            return 0
        if job.error:
            self.stderr.write(f"{job.definition} job #{job.pk} {job.status}: {job.error}")
        if job.status == JobStatus.PAUSED:
            self.stderr.write(f"{job.definition} job #{job.pk} is paused; `resume` carries on")
            return PAUSED
        return NOT_DONE if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) else 0

    def do_pause(self, options: Namespace) -> int:
        return self.act(Action.PAUSE, options.name)

    def do_resume(self, options: Namespace) -> int:
        return self.act(Action.RESUME, options.name)

    def do_cancel(self, options: Namespace) -> int:
        return self.act(Action.CANCEL, options.name)

    def do_retry(self, options: Namespace) -> int:
        return self.act(Action.RETRY, options.name)

    def act(self, action: Action, name: str) -> int:
        job = service.ACTIONS[action](name, actor(), None)
        self.stdout.write(f"{action.capitalize()}: {job.definition} job #{job.pk} is {job.status}.")
        return 0

    def do_check(self, options: Namespace) -> int:
        result = checker.check(get_definition(options.name))
        if options.json:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        else:
            self.stdout.write(result.summary())
        return 0 if result.passed else NOT_DONE

    def do_run(self, options: Namespace) -> int:
        job_options = self.job_options(options)
        if not options.sync:
            job = service.start(options.name, actor(), job_options)
            return self.watch(job)
        job = service.run_sync(
            options.name,
            actor(),
            job_options,
            on_progress=lambda j: self.show(job_progress(j), False),
        )
        if self.stdout.isatty():
            self.stdout.write("")
        return self.exit_code(job)

    def do_revert(self, options: Namespace) -> int:
        job = service.latest_job(options.name)
        if not options.yes and not self.confirm(job):
            raise BackfillError("revert not confirmed; nothing changed (use --yes in scripts)")
        if options.sync:
            job = service.revert_sync(
                options.name, actor(), on_progress=lambda j: self.show(job_progress(j), False)
            )
            if self.stdout.isatty():
                self.stdout.write("")
            return self.exit_code(job)
        return self.watch(service.revert(options.name, actor()))

    def confirm(self, job: Job) -> bool:
        if not sys.stdin.isatty():
            return False
        answer = input(f"Undo what {job.definition} job #{job.pk} filled? [y/N] ")
        return answer.strip().lower() in {"y", "yes"}

    def do_reconcile(self, options: Namespace) -> int:
        report = service.reconcile()
        self.stdout.write(f"Reconciled {report.jobs} jobs; dispatched {report.dispatched} slices.")
        return 0

    def do_prune(self, options: Namespace) -> int:
        pruned = service.prune_logs(options.name, actor())
        for done in pruned:
            self.stdout.write(
                f"{done.definition} job #{done.job_id}: write log of {done.batches:,} batches "
                f"dropped ({done.reason})"
            )
        if not pruned:
            self.stdout.write(
                "No write log to drop: none is left of a job that can no longer be reverted."
            )
        return 0
