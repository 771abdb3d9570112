"""The guarantees of the admin-group backfill, checked in one place."""

from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.db import connection

from backfill.models import Job, Slice
from organizations import audit
from organizations.models import Organization


@dataclass(frozen=True)
class Report:
    organizations: int
    without_admin: int
    shared_groups: int
    orphan_groups: int
    misnamed: int
    rows_done: int
    took_existing_group: int
    existing_groups: int


def check_admin_groups(job: Job, renamed: frozenset[int] = frozenset()) -> Report:
    """Counts of every way the guarantees could be broken (all zero when sound)."""
    floor = job.context["group_id_floor"]
    with connection.cursor() as cursor:
        shared = audit.shared_groups(cursor)
        orphans = audit.orphan_groups(cursor, floor)
        took_existing = audit.linked_to_existing(cursor, floor)
    return Report(
        organizations=Organization.objects.count(),
        without_admin=Organization.objects.filter(admin__isnull=True).count(),
        shared_groups=shared,
        orphan_groups=orphans,
        misnamed=audit.misnamed(exclude=renamed),
        rows_done=Slice.objects.filter(job=job).rows_done(),
        took_existing_group=took_existing,
        existing_groups=Group.objects.filter(pk__lte=floor).count(),
    )


def filled_by_job(job: Job) -> int:
    """Organizations in the job's range whose group the job made."""
    return Organization.objects.filter(
        pk__gte=job.key_low, pk__lte=job.key_high, admin_id__gt=job.context["group_id_floor"]
    ).count()


def assert_sound(
    job: Job, renamed: frozenset[int] = frozenset(), exact_counters: bool = True
) -> Report:
    report = check_admin_groups(job, renamed)
    assert report.without_admin == 0, report
    assert report.shared_groups == 0, report
    assert report.orphan_groups == 0, report
    assert report.misnamed == 0, report
    # No organization was handed a group that existed before the job (only those
    # linked then may link one now), and none of those groups was deleted.
    assert report.took_existing_group <= job.context["linked_at_start"], report
    assert report.existing_groups == job.context["groups_at_start"], report
    if exact_counters:
        assert report.rows_done == filled_by_job(job), report
    print(f"invariants held: {report}")  # shown with `pytest -s`: the figures behind a pass
    return report
