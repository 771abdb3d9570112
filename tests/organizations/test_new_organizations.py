"""New organizations get their admin group at creation, by the rule."""

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction

from organizations.models import AdminNameCounter, Organization

pytestmark = pytest.mark.django_db


def test_three_organizations_with_the_same_name_get_sequential_groups():
    names = [
        Organization.objects.create(name="Test Groups With Conflict Org").admin.name
        for _ in range(3)
    ]
    assert names == [
        "Test Groups With Conflict Org Admin",
        "Test Groups With Conflict Org 1 Admin",
        "Test Groups With Conflict Org 2 Admin",
    ]


def test_a_group_someone_already_made_is_never_taken_over():
    existing = Group.objects.create(name="Acme Admin")
    Group.objects.create(name="Acme 2 Admin")
    first = Organization.objects.create(name="Acme")
    second = Organization.objects.create(name="Acme")
    assert first.admin.name == "Acme 1 Admin"
    assert second.admin.name == "Acme 3 Admin"
    assert not Organization.objects.filter(admin=existing).exists()


def test_an_organization_named_like_a_numbered_group_skips_to_a_free_name():
    Organization.objects.create(name="Acme")
    Organization.objects.create(name="Acme")  # takes "Acme 1 Admin"
    own = Organization.objects.create(name="Acme 1")
    assert own.admin.name == "Acme 1 1 Admin"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "x" * 255,
        "Organización Ñandú",
        "株式会社テスト",
        "🚀🌍 Rocket",
        "Robert'); DROP TABLE auth_group;--",
        "100% _under_ \\slash",
    ],
)
def test_any_name_gets_a_group_by_the_rule(name):
    organization = Organization.objects.create(name=name)
    assert organization.admin.name == name[:50] + " Admin"
    assert Group.objects.filter(name=name[:50] + " Admin").count() == 1


def create_then_fail() -> None:
    with transaction.atomic():
        Organization.objects.create(name="Rolled Back")
        raise IntegrityError("simulated failure after the insert")


def test_the_group_and_the_organization_commit_or_roll_back_together():
    with pytest.raises(IntegrityError):
        create_then_fail()
    assert not Group.objects.filter(name="Rolled Back Admin").exists()


def test_deleting_an_organization_deletes_its_group_and_frees_its_number():
    orgs = [Organization.objects.create(name="Gap") for _ in range(3)]
    middle = orgs[1].admin
    orgs[1].delete()
    assert not Group.objects.filter(pk=middle.pk).exists()
    assert Organization.objects.create(name="Gap").admin.name == "Gap 1 Admin"
    assert Organization.objects.create(name="Gap").admin.name == "Gap 3 Admin"


def test_queryset_delete_also_removes_the_groups():
    Organization.objects.create(name="Bulk")
    Organization.objects.create(name="Bulk")
    Organization.objects.filter(name="Bulk").delete()
    assert not Group.objects.filter(name__startswith="Bulk").exists()


def test_many_organizations_with_one_name_use_the_counter_not_a_scan():
    for _ in range(30):
        Organization.objects.create(name="Popular")
    assert AdminNameCounter.objects.get(base="Popular").next_number == 30
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM auth_group WHERE name LIKE 'Popular%%'")
        assert cursor.fetchone()[0] == 30


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_one_name_never_fail_and_never_share_a_name():
    workers = 8
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []
    names: list[str] = []
    lock = threading.Lock()

    def create() -> None:
        try:
            barrier.wait(timeout=10)
            organization = Organization.objects.create(name="Race")
            with lock:
                names.append(organization.admin.name)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(names) == sorted(["Race Admin"] + [f"Race {k} Admin" for k in range(1, workers)])


def test_a_renamed_organization_frees_its_number_for_its_old_name_when_deleted():
    orgs = [Organization.objects.create(name="Acme") for _ in range(3)]
    orgs[1].name = "Zed"
    orgs[1].save()
    orgs[1].delete()
    assert Organization.objects.create(name="Acme").admin.name == "Acme 1 Admin"


def test_deleting_the_holder_of_another_bases_name_frees_it_for_that_base():
    holder = Organization.objects.create(name="Acme 1")  # holds "Acme 1 Admin"
    assert Organization.objects.create(name="Acme").admin.name == "Acme Admin"
    assert Organization.objects.create(name="Acme").admin.name == "Acme 2 Admin"
    holder.delete()
    assert Organization.objects.create(name="Acme").admin.name == "Acme 1 Admin"


def test_save_with_update_fields_without_the_name_writes_and_keeps_the_search_name():
    organization = Organization.objects.create(name="Quiet Co")
    organization.save(update_fields=["updated_at"])
    organization.refresh_from_db()
    assert organization.search_name == "quiet co"
    organization.name = "Loud Co"
    organization.save(update_fields=["name"])
    assert organization.search_name == "loud co"
