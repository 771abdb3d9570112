"""An organization's admin group goes with it.

Receivers rather than an overridden `delete()` because queryset deletes and
cascades call signals but not `Model.delete()`.
"""

from typing import Any

from django.contrib.auth.models import Group
from django.db import connections
from django.db.models.signals import post_delete, pre_delete
from django.dispatch import receiver

from organizations import naming
from organizations.models import AdminNameCounter, Organization


@receiver(pre_delete, sender=Organization)
def lock_and_read_admin(sender: type[Organization], instance: Organization, **kwargs: Any) -> None:
    """Read the link as committed now, waiting for a backfill batch holding the row.

    The instance may have been loaded before a batch linked its group; without
    this re-read, the group the batch made would outlive its organization.
    """
    current = (
        Organization.objects.using(kwargs.get("using", "default"))
        .select_for_update()
        .filter(pk=instance.pk)
        .values_list("admin_id", flat=True)
        .first()
    )
    if current is not None:
        instance.admin_id = current


@receiver(post_delete, sender=Organization)
def delete_admin_group(sender: type[Organization], instance: Organization, **kwargs: Any) -> None:
    """Delete the group, and lower the hint of every base whose rule gives its name.

    The freed name is the smallest free one again for each of those bases
    ("Acme 1 Admin" for "Acme 1" and for "Acme"), whatever the organization is
    called now. Runs inside the delete's transaction, holding the same per-base
    locks as app-path claims, so a concurrent creation never reads a hint that
    is about to be lowered.
    """
    if instance.admin_id is None:
        return
    using = kwargs.get("using", "default")
    group = Group.objects.using(using).filter(pk=instance.admin_id).first()
    if group is None:
        return
    freed = naming.claimants(group.name)
    with connections[using].cursor() as cursor:
        naming.lock_bases(cursor, [base for base, _ in freed])
    group.delete()
    for base, number in freed:
        AdminNameCounter.objects.using(using).filter(base=base, next_number__gt=number).update(
            next_number=number
        )
