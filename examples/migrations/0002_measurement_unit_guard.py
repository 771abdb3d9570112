"""Expand, continued: filled units stay filled; the empty ones are indexed, one
partition at a time (an index on a partitioned table cannot be built CONCURRENTLY)."""

from django.db import migrations

from backfill.guard import GuardFilledColumn


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("examples", "0001_initial")]

    operations = [GuardFilledColumn("measurement", "unit")]
