"""Expand: add the nullable admin link without blocking writes on a large table.

`SaferAddFieldOneToOne` adds the column with no default (a catalog-only
change), builds the unique index CONCURRENTLY and attaches it as the unique
constraint, adds the foreign key NOT VALID (no scan) and validates it in its
own statement (a scan under SHARE UPDATE EXCLUSIVE, which lets writes
through). Each step checks the catalog first, so a run interrupted halfway is
finished by running `migrate` again. Non-atomic: CREATE INDEX CONCURRENTLY
cannot run inside a transaction. See docs/expand.md for the choice of library.
"""

import django.db.models.deletion
from django.db import migrations, models
from django_pg_migration_tools import operations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("organizations", "0002_adminnamecounter"),
    ]

    operations = [
        operations.SaferAddFieldOneToOne(
            model_name="organization",
            name="admin",
            field=models.OneToOneField(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="administrators_of",
                to="auth.group",
            ),
        ),
    ]
