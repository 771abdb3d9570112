"""The numbers given back per name base, that naming takes first.

A new, empty table: creating it and its indexes locks nothing that the app
uses. Its primary key (base, number) is the index the naming statement reads
the smallest freed numbers of a base from; the index on the group name is
the one the triggers strike taken names off with.

It depends on 0004, not on the contract (0006): naming needs it in the
expanded state too, where the backfill runs, so going back to 0005 (reversing
the contract) must keep it. 0009 joins the two branches again.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("organizations", "0004_organization_search_name_expand")]

    operations = [
        migrations.CreateModel(
            name="FreedAdminName",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "base",
                        "number",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("base", models.CharField(max_length=50)),
                ("number", models.PositiveIntegerField()),
                ("name", models.CharField(db_index=True, max_length=150)),
            ],
            options={"db_table": "organizations_freedadminname"},
        ),
    ]
