"""The per-base counter that keeps admin-group naming flat in cost.

A new, empty table: creating it locks nothing that the app uses.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("organizations", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="AdminNameCounter",
            fields=[
                ("base", models.CharField(max_length=50, primary_key=True, serialize=False)),
                ("next_number", models.PositiveIntegerField()),
            ],
            options={"db_table": "organizations_adminnamecounter"},
        ),
    ]
