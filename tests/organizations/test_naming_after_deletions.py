"""Freed numbers are found at once, whatever the size of the base and whoever freed them."""

import threading
import time

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from backfill.engine import service
from backfill.engine.options import JobOptions
from backfill.transactions import REVERTING_SETTING
from organizations import naming
from organizations.backfills import AdminGroups
from organizations.models import FreedAdminName, Organization

pytestmark = pytest.mark.django_db

CROWD = 100_000


def smallest_free(base: str) -> str:
    taken = set(Group.objects.filter(name__startswith=base).values_list("name", flat=True))
    k = 0
    while naming.admin_group_name(base, k) in taken:
        k += 1
    return naming.admin_group_name(base, k)


def seed_named_base(base: str, count: int) -> None:
    """`count` organizations called `base`, each with the group the rule gave it, as the app
    leaves them after `count` creations (the counter one past the highest number)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO auth_group (name) SELECT CASE WHEN k = 0 THEN %(base)s || ' Admin' "
            "ELSE %(base)s || ' ' || k || ' Admin' END FROM generate_series(0, %(last)s) AS k",
            {"base": base, "last": count - 1},
        )
        cursor.execute(
            "INSERT INTO organizations_organization (name, created_at, updated_at, admin_id) "
            "SELECT %(base)s, now(), now(), g.id FROM auth_group g "
            "WHERE g.name LIKE %(pattern)s ORDER BY g.id",
            {"base": base, "pattern": base + " %"},
        )
        cursor.execute(
            "INSERT INTO organizations_adminnamecounter (base, next_number) VALUES (%s, %s)",
            [base, count],
        )


def create_counting_rounds(name: str) -> tuple[str, int, float]:
    """Create one organization; its group's name, the naming rounds it took, its seconds."""
    began = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        organization = Organization.objects.create(name=name)
    seconds = time.perf_counter() - began
    rounds = sum('INSERT INTO "auth_group"' in q["sql"] for q in queries.captured_queries)
    return organization.admin.name, rounds, seconds


def test_a_number_freed_in_a_crowded_base_is_taken_next_then_the_counter_goes_on():
    seed_named_base("Crowd", CROWD)
    Organization.objects.filter(admin__name="Crowd 500 Admin").get().delete()
    first = create_counting_rounds("Crowd")
    second = create_counting_rounds("Crowd")
    third = create_counting_rounds("Crowd")
    print(f"\nafter one deletion in a base of {CROWD:,}: {first}, {second}, {third}")
    assert [first[0], second[0], third[0]] == [
        "Crowd 500 Admin",
        f"Crowd {CROWD} Admin",
        f"Crowd {CROWD + 1} Admin",
    ]
    # One naming statement each: no probing past the taken numbers.
    assert [first[1], second[1], third[1]] == [1, 1, 1]


def test_many_deletions_in_a_crowded_base_are_reused_smallest_first():
    seed_named_base("Herd", 5_000)
    for k in (4_000, 7, 2_500):
        Organization.objects.filter(admin__name=f"Herd {k} Admin").get().delete()
    made = [create_counting_rounds("Herd") for _ in range(4)]
    assert [name for name, _, _ in made] == [
        "Herd 7 Admin",
        "Herd 2500 Admin",
        "Herd 4000 Admin",
        "Herd 5000 Admin",
    ]
    assert {rounds for _, rounds, _ in made} == {1}


def test_a_long_run_of_taken_names_above_the_counter_never_exhausts_the_rounds(monkeypatch):
    """Groups someone made by hand (or other bases' k=0 names) above the counter: each
    round starts past the numbers the last one found taken, so no width is ever too small."""
    monkeypatch.setattr(naming, "ROUND_SLACK", (0, 8, 64))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO auth_group (name) SELECT CASE WHEN k = 0 THEN 'Wall Admin' "
            "ELSE 'Wall ' || k || ' Admin' END FROM generate_series(0, 1999) AS k"
        )
    assert Organization.objects.create(name="Wall").admin.name == "Wall 2000 Admin"
    assert Organization.objects.create(name="Wall").admin.name == "Wall 2001 Admin"


def test_a_raw_sql_delete_leaves_no_orphan_group_and_frees_the_number():
    kept = Organization.objects.create(name="Raw")
    doomed = Organization.objects.create(name="Raw")
    member = User.objects.create(username="raw-member")
    doomed.admin.user_set.add(member)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM organizations_organization WHERE id = %s", [doomed.pk])
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the deferred foreign keys hold
    assert not Group.objects.filter(pk=doomed.admin_id).exists()
    assert Group.objects.filter(pk=kept.admin_id).exists()
    assert User.objects.filter(pk=member.pk).exists()
    assert Organization.objects.create(name="Raw").admin.name == "Raw 1 Admin"


def test_a_raw_sql_delete_of_many_organizations_leaves_no_orphan_group():
    for _ in range(5):
        Organization.objects.create(name="Many")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM organizations_organization WHERE name = 'Many'")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert not Group.objects.filter(name__startswith="Many").exists()
    assert Organization.objects.create(name="Many").admin.name == "Many Admin"


def revert_then_commit_later(writes: list[tuple[str, str]], reverted: threading.Event) -> None:
    """The revert hook of one batch, held open while a creation runs, then committed."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, 'on', true)", [REVERTING_SETTING])
            AdminGroups().revert(cursor, {}, writes)
            reverted.set()
            time.sleep(0.5)
    finally:
        reverted.set()
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_revert_racing_a_creation_leaves_the_smallest_free_number():
    Organization.objects.bulk_create(Organization(name="Acme") for _ in range(3))
    job = service.run_sync("admin_groups", "test", JobOptions.build(batch_size=50))
    assert job.status == "succeeded"
    writes = [(str(pk), str(g)) for pk, g in Organization.objects.values_list("pk", "admin_id")]
    reverted = threading.Event()
    revert = threading.Thread(target=revert_then_commit_later, args=(writes, reverted))
    revert.start()
    assert reverted.wait(30)
    racing = Organization.objects.create(name="Acme").admin.name
    revert.join(30)
    # The creation ran before the revert committed, or after: either way a name that
    # was the smallest free one at its moment, and from then on the smallest free again.
    assert racing in ("Acme 3 Admin", "Acme Admin")
    for _ in range(3):
        expected = smallest_free("Acme")
        assert Organization.objects.create(name="Acme").admin.name == expected
    names = set(Group.objects.values_list("name", flat=True))
    assert {"Acme Admin", "Acme 1 Admin", "Acme 2 Admin", "Acme 3 Admin"} <= names


@pytest.mark.parametrize(
    "group_name",
    [
        "Acme Admin",
        "Acme 1 Admin",
        "Acme 1 2 Admin",
        " 1 Admin",
        "Acme 07 Admin",
        "Acme ٣ Admin",
        "Acme 123456789 Admin",
        "Acme 1234567890 Admin",
        "x" * 51 + " Admin",
        "x" * 50 + " 3 Admin",
        "Sales",
    ],
)
def test_a_deleted_group_is_listed_as_freed_for_exactly_the_bases_whose_rule_gives_it(
    group_name,
):
    Group.objects.create(name=group_name).delete()
    listed = set(FreedAdminName.objects.values_list("base", "number"))
    assert listed == set(naming.claimants(group_name))
    Group.objects.create(name=group_name)
    assert not FreedAdminName.objects.exists()


def test_a_batch_gives_names_in_key_order_across_bases_that_share_a_name():
    """ "Bolt 1 Admin" is k=1 of "Bolt" and k=0 of "Bolt 1": the lower key takes it even
    when its base needs a wider round to find it."""
    Group.objects.create(name="Bolt Admin")
    with connection.cursor() as cursor:
        claimed = naming.claim_admin_groups(cursor, [1, 2, 3], ["Bolt", "Acme", "Bolt 1"])
    names = dict(Group.objects.filter(pk__in=claimed.values()).values_list("pk", "name"))
    assert {key: names[group] for key, group in claimed.items()} == {
        1: "Bolt 1 Admin",
        2: "Acme Admin",
        3: "Bolt 1 1 Admin",
    }
