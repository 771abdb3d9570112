"""The naming rule under any interleaving: Hypothesis drives the app and the backfill.

Random sequences of creations, renames, deletions (through the ORM and by raw
SQL), legacy inserts (an old app server), backfill runs, reverts of the last
run and two connections acting at once. After every step,
each group made in that step has the smallest free k for its base at the
moment it was made (the model below replays the step sequentially; for two
connections at once, either order may have won), and no organization lacks,
shares or has lost its group.
"""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection, connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from backfill.engine import service
from backfill.engine.options import JobOptions
from organizations import audit
from organizations.models import Organization
from organizations.naming import admin_group_name, name_base

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LONG = "L" * 50
# Few names, chosen to collide: "Acme 1" owns what "Acme" calls k=1, and two
# long names share one base after truncation to 50 characters.
NAMES = st.sampled_from(["Acme", "Acme 1", "Acme 2", "Bolt", "Bolt 1", LONG + "x", LONG + "y"])


def smallest_free(base: str, taken: set[str]) -> str:
    k = 0
    while admin_group_name(base, k) in taken:
        k += 1
    return admin_group_name(base, k)


def taken_names() -> set[str]:
    return set(Group.objects.values_list("name", flat=True))


def group_of(pk: int) -> str | None:
    return Organization.objects.filter(pk=pk).values_list("admin__name", flat=True).first()


def at_once(*actions: Callable[[], Any]) -> list[Any]:
    """Run each action on its own connection, released together."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int, action: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[index] = action()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def create(name: str) -> int:
    return Organization.objects.create(name=name).pk


def delete(pk: int) -> None:
    Organization.objects.get(pk=pk).delete()


class Naming(RuleBasedStateMachine):
    organizations = Bundle("organizations")

    def __init__(self) -> None:
        super().__init__()
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE organizations_organization, auth_group, organizations_adminnamecounter, "
                "organizations_freedadminname, backfill_job RESTART IDENTITY CASCADE"
            )
        self.legacy: set[int] = set()
        self.revertable = False

    @rule(target=organizations, name=NAMES)
    def create_one(self, name: str) -> int:
        expected = smallest_free(name_base(name), taken_names())
        pk = create(name)
        assert group_of(pk) == expected
        return pk

    @rule(target=organizations, name=NAMES)
    def insert_legacy(self, name: str) -> int:
        """An old app server: no group, left for the backfill."""
        (organization,) = Organization.objects.bulk_create([Organization(name=name)])
        self.legacy.add(organization.pk)
        return organization.pk

    @rule(pk=organizations, name=NAMES)
    def rename(self, pk: int, name: str) -> None:
        organization = Organization.objects.filter(pk=pk).first()
        if organization is not None:
            organization.name = name
            organization.save()

    @rule(pk=consumes(organizations))
    def delete_one(self, pk: int) -> None:
        delete(pk)
        self.legacy.discard(pk)

    @rule(pk=consumes(organizations))
    def delete_by_raw_sql(self, pk: int) -> None:
        """What no signal sees: the database drops the group and lists its name as freed."""
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM organizations_organization WHERE id = %s", [pk])
        self.legacy.discard(pk)

    @rule()
    def revert_last_backfill(self) -> None:
        """The rows the last run filled lose their groups and are legacy rows again."""
        if not self.revertable:
            return
        job = service.revert_sync("admin_groups", "test")
        assert job.status == "reverted", job.status
        self.revertable = False
        self.legacy = set(
            Organization.objects.filter(admin__isnull=True).values_list("pk", flat=True)
        )

    @rule()
    def backfill(self) -> None:
        """The legacy rows, in key order, take the smallest free names in turn."""
        taken = taken_names()
        expected = set()
        names = Organization.objects.filter(pk__in=self.legacy).order_by("pk")
        for name in names.values_list("name", flat=True):
            given = smallest_free(name_base(name), taken)
            expected.add(given)
            taken.add(given)
        job = service.run_sync("admin_groups", "test", JobOptions.build(batch_size=50))
        assert job.status == "succeeded"
        made = set(
            Organization.objects.filter(pk__in=self.legacy).values_list("admin__name", flat=True)
        )
        assert made == expected
        self.legacy.clear()
        self.revertable = True

    @rule(target=organizations, first=NAMES, second=NAMES)
    def two_creations_at_once(self, first: str, second: str):
        taken = taken_names()
        one_first = {smallest_free(name_base(first), taken)}
        one_first.add(smallest_free(name_base(second), taken | one_first))
        two_first = {smallest_free(name_base(second), taken)}
        two_first.add(smallest_free(name_base(first), taken | two_first))
        pks = at_once(lambda: create(first), lambda: create(second))
        made = {group_of(pk) for pk in pks}
        assert made in (one_first, two_first), (made, one_first, two_first)
        return multiple(*pks)

    @rule(target=organizations, victim=consumes(organizations), name=NAMES)
    def deletion_and_creation_at_once(self, victim: int, name: str):
        taken = taken_names()
        freed = taken - {group_of(victim)}
        possible: set[str | None] = {
            smallest_free(name_base(name), taken),
            smallest_free(name_base(name), freed),
        }
        _, pk = at_once(lambda: delete(victim), lambda: create(name))
        self.legacy.discard(victim)
        assert group_of(pk) in possible
        return pk

    @invariant()
    def every_organization_has_a_group_of_its_own(self) -> None:
        assert not Organization.objects.filter(admin__isnull=True).exclude(pk__in=self.legacy)
        with connection.cursor() as cursor:
            assert audit.shared_groups(cursor) == 0
            assert audit.orphan_groups(cursor, 0) == 0


def test_every_interleaving_keeps_the_smallest_free_number():
    run_state_machine_as_test(
        Naming,
        settings=settings(
            max_examples=25,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
