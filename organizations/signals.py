"""An organization's admin group goes with it.

Receivers rather than an overridden `delete()` because queryset deletes and
cascades call signals but not `Model.delete()`.
"""

from typing import Any

from django.contrib.auth.models import Group
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
    if instance.admin_id is None:
        return
    using = kwargs.get("using", "default")
    group = Group.objects.using(using).filter(pk=instance.admin_id).first()
    if group is None:
        return
    number = naming.number_in(group.name, instance.name)
    group.delete()
    if number is not None:
        # The freed number is the smallest free one again for this base.
        AdminNameCounter.objects.using(using).filter(
            base=naming.name_base(instance.name), next_number__gt=number
        ).update(next_number=number)
