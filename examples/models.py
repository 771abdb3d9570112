"""Tables the engine must walk besides `Organization`: each column is the one a backfill fills."""

import uuid

from django.db import models


class Ticket(models.Model):
    """Keyed by random UUIDs, as many Django projects key their tables."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subject = models.CharField(max_length=200)
    code = models.CharField(max_length=8, null=True)  # noqa: DJ001

    def __str__(self) -> str:
        return self.subject


class Reading(models.Model):
    """Integer keys from a sequence that jumped (ids above 10^12 after the first million)."""

    value = models.IntegerField()
    label = models.CharField(max_length=20, null=True)  # noqa: DJ001

    def __str__(self) -> str:
        return f"reading {self.pk}"


class Measurement(models.Model):
    """A range-partitioned table (by id; see migration 0001): one parent, two partitions."""

    value = models.IntegerField()
    unit = models.CharField(max_length=2)

    def __str__(self) -> str:
        return f"{self.value} {self.unit}"


class Membership(models.Model):
    """A composite primary key: the engine refuses it with one line."""

    pk = models.CompositePrimaryKey("team", "person")
    team = models.IntegerField()
    person = models.IntegerField()
    role = models.CharField(max_length=20, null=True)  # noqa: DJ001

    def __str__(self) -> str:
        return f"{self.person} in {self.team}"
