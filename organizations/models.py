"""The domain: organizations, each with its own administrators group."""

from typing import Any

from django.contrib.auth.models import Group
from django.db import models, router, transaction
from django.db.models import Value
from django.db.models.functions import Lower

from organizations import naming


class Organization(models.Model):
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Required since the contract migration (0006), which ran only once the
    # admin_groups backfill had filled every legacy row.
    admin = models.OneToOneField(
        Group,
        on_delete=models.PROTECT,
        related_name="administrators_of",
    )
    # lower(name), computed by PostgreSQL on every write so that rows written
    # by the app and rows filled by the search_names backfill always agree.
    search_name = models.CharField(max_length=255, null=True, editable=False)  # noqa: DJ001

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Give a new organization its admin group in the same transaction.

        This lives in `save()` rather than in a signal so that whoever reads
        the model sees it, and so the group exists before the row is written:
        the organization is inserted once, already linked. `bulk_create` and
        raw SQL bypass it on purpose; such rows count as legacy rows and the
        `admin_groups` backfill fills them.
        """
        update_fields = kwargs.get("update_fields")
        computes_search_name = update_fields is None or "name" in update_fields
        if computes_search_name:
            self.search_name = Lower(Value(self.name))
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "search_name"}
        if self._state.adding and self.admin_id is None:
            using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
            with transaction.atomic(using=using):
                self.admin_id = naming.claim_admin_group(self.name, using=using)
                super().save(*args, **kwargs)
        else:
            super().save(*args, **kwargs)
        if computes_search_name:
            # The value is the database's; read it on first access.
            del self.search_name


class AdminNameCounter(models.Model):
    """Where probing for a free admin-group number starts, per name base.

    Never lowered: every number below `next_number` is taken or listed in
    `FreedAdminName`. The unique index on group names settles races.
    """

    base = models.CharField(max_length=naming.BASE_LENGTH, primary_key=True)
    next_number = models.PositiveIntegerField()

    class Meta:
        db_table = naming.COUNTER_TABLE

    def __str__(self) -> str:
        return f"{self.base}: {self.next_number}"


class FreedAdminName(models.Model):
    """A number of a base whose group name was taken and is free again.

    Written by triggers on `auth_group` (organizations/migrations/0008), in the
    transaction that frees or takes the name, whoever does it: the app, a
    revert, raw SQL. So the list is exact, and the smallest free number is the
    smallest listed one or else the counter, one index lookup in a base of any
    size.
    """

    pk = models.CompositePrimaryKey("base", "number")
    base = models.CharField(max_length=naming.BASE_LENGTH)
    number = models.PositiveIntegerField()
    # The group name itself, indexed: a batch inserting a thousand names strikes
    # them off with one index probe each, without parsing any of them.
    name = models.CharField(max_length=150, db_index=True)

    class Meta:
        db_table = naming.FREED_TABLE

    def __str__(self) -> str:
        return f"{self.base}: {self.number}"
