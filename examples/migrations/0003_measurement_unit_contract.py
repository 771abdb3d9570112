"""Contract: every measurement has a unit, enforced on the parent and each partition."""

from django.db import migrations

from backfill import EnforceNotNull


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("examples", "0002_measurement_unit_guard")]

    operations = [EnforceNotNull("measurement", "unit", backfill="measurement_units")]
