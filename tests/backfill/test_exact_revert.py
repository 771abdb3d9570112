"""Revert undoes exactly what the job wrote: never what the app wrote, at the cost of the rows made."""

import pytest
from django.contrib.auth.models import Group, User

from backfill.engine import service
from backfill.engine.options import JobOptions
from backfill.models import JobStatus, Sample, Write
from organizations.models import Organization
from tests.data import seed

pytestmark = pytest.mark.django_db(transaction=True)


def test_organizations_the_app_created_during_the_job_keep_their_groups(local_queue, drain):
    seed(1_000, share=0.2, existing_groups=30)
    before = set(Group.objects.values_list("pk", flat=True))
    job = service.start("admin_groups", "test", JobOptions.build(batch_size=100, concurrency=1))
    # While it runs: the app creates organizations (through save, so with their
    # group) and an old server inserts legacy rows, both past the job's range.
    app_made = [Organization.objects.create(name=f"Live {i}") for i in range(5)]
    Organization.objects.bulk_create(Organization(name=f"Old server {i}") for i in range(5))
    job = drain(job)
    assert job.status == JobStatus.SUCCEEDED
    assert int(job.key_high) >= max(o.pk for o in app_made)  # the range was extended over them

    job = drain(service.revert("admin_groups", "test"))
    assert job.status == JobStatus.REVERTED
    for organization in app_made:
        organization.refresh_from_db()
        assert organization.admin_id is not None
    assert Organization.objects.filter(admin__isnull=True).count() == 1_005
    app_groups = {o.admin_id for o in app_made}
    assert set(Group.objects.values_list("pk", flat=True)) == before | app_groups
    assert not Write.objects.filter(job=job).exists()


def test_values_the_app_wrote_since_are_kept(local_queue, drain):
    seed(300, share=0.2, existing_groups=20)
    Organization.objects.update(search_name=None)
    drain(service.start("search_names", "test", JobOptions.build(batch_size=100)))
    renamed = Organization.objects.order_by("pk")[7]
    renamed.name = "Renamed By The App"
    renamed.save()  # the app's own write: lower(name)
    job = drain(service.revert("search_names", "test"))
    assert job.status == JobStatus.REVERTED
    renamed.refresh_from_db()
    assert renamed.search_name == "renamed by the app"
    assert Organization.objects.filter(search_name__isnull=True).count() == 299


def test_a_group_the_app_gave_members_survives_the_revert(local_queue, drain):
    seed(50, share=0.2, existing_groups=20)
    drain(service.start("admin_groups", "test"))
    organization = Organization.objects.order_by("pk").first()
    group = organization.admin
    User.objects.create_user("admin-of-first").groups.add(group)
    drain(service.revert("admin_groups", "test"))
    organization.refresh_from_db()
    assert organization.admin_id is None
    assert Group.objects.filter(pk=group.pk, user__username="admin-of-first").exists()


def test_revert_cost_follows_the_rows_made_not_the_key_range(local_queue, drain):
    seed(200, share=0.2, existing_groups=20)
    Organization.objects.bulk_create([Organization(pk=10**12, name="Far Away")])
    drain(service.start("admin_groups", "test", JobOptions.build(batch_size=100, concurrency=1)))
    fill_batches = Sample.objects.count()
    job = drain(service.revert("admin_groups", "test"))
    assert job.status == JobStatus.REVERTED
    assert Organization.objects.filter(admin__isnull=True).count() == 201
    # One undo per logged batch, and one per slice to find the log empty.
    assert Sample.objects.count() - fill_batches <= fill_batches + job.slices.count()
