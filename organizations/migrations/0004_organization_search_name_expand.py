"""Expand: a nullable search_name column, filled by the search_names backfill.

A nullable column with no default is a catalog-only change in PostgreSQL: no
table rewrite, and the ACCESS EXCLUSIVE lock is held for milliseconds (run
with `migrate_with_timeouts` so it does not queue behind a long transaction).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("organizations", "0003_organization_admin_expand")]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="search_name",
            field=models.CharField(editable=False, max_length=255, null=True),
        ),
    ]
