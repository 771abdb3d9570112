"""The guarantees of the admin-group backfill, checked in one place."""

from dataclasses import dataclass

from django.db import connection
from django.db.models import Sum

from backfill.models import Job, Slice
from organizations.models import Organization
from organizations.naming import admin_group_name, name_base


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
        cursor.execute(
            "SELECT count(*) FROM (SELECT admin_id FROM organizations_organization "
            "WHERE admin_id IS NOT NULL GROUP BY admin_id HAVING count(*) > 1) s"
        )
        shared = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM auth_group g WHERE g.id > %s AND NOT EXISTS "
            "(SELECT 1 FROM organizations_organization o WHERE o.admin_id = g.id)",
            [floor],
        )
        orphans = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM organizations_organization WHERE admin_id <= %s", [floor]
        )
        took_existing = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM auth_group WHERE id <= %s", [floor])
        existing = cursor.fetchone()[0]
    misnamed = sum(
        1
        for pk, name, group in Organization.objects.exclude(pk__in=renamed)
        .filter(admin__isnull=False)
        .values_list("pk", "name", "admin__name")
        .iterator(chunk_size=5000)
        if not follows_rule(name, group)
    )
    done = Slice.objects.filter(job=job).aggregate(total=Sum("rows_done"))["total"] or 0
    return Report(
        organizations=Organization.objects.count(),
        without_admin=Organization.objects.filter(admin__isnull=True).count(),
        shared_groups=shared,
        orphan_groups=orphans,
        misnamed=misnamed,
        rows_done=done,
        took_existing_group=took_existing,
        existing_groups=existing,
    )


def follows_rule(name: str, group: str) -> bool:
    base = name_base(name)
    if group == admin_group_name(name):
        return True
    middle = group.removeprefix(base + " ").removesuffix(" Admin")
    return (
        group.startswith(base + " ")
        and middle.isdigit()
        and group == admin_group_name(name, int(middle))
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
