"""Keys kept in their text form, so a job can walk any orderable primary key.

A slice's inclusive `low` becomes an exclusive `after` (low - 1 for the
integer keys of jobs made before), and each slice counts the pending rows it
was made for. The engine's own small tables: rewriting them is quick.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("backfill", "0006_slice_shares_and_lock_timeouts"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="slice", name="backfill_slice_range"),
        migrations.AlterField(model_name="job", name="key_low", field=models.TextField(null=True)),
        migrations.AlterField(model_name="job", name="key_high", field=models.TextField(null=True)),
        migrations.AlterField(model_name="slice", name="low", field=models.TextField(null=True)),
        migrations.AlterField(model_name="slice", name="high", field=models.TextField()),
        migrations.AlterField(model_name="slice", name="cursor", field=models.TextField(null=True)),
        migrations.RunSQL(
            "UPDATE backfill_slice SET low = (low::bigint - 1)::text",
            "UPDATE backfill_slice SET low = (coalesce(low::bigint, 0) + 1)::text",
        ),
        migrations.RenameField(model_name="slice", old_name="low", new_name="after"),
        migrations.AddField(
            model_name="slice", name="rows_expected", field=models.BigIntegerField(default=0)
        ),
    ]
