"""Joins the naming branch (0007, 0008) and the contract (0006) into one history.

The naming branch is listed first so that a plain `migrate` installs it before
it reaches the contract, which refuses while rows are still pending.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("organizations", "0008_admin_name_triggers"),
        ("organizations", "0006_organization_admin_contract"),
    ]

    operations: list[migrations.operations.base.Operation] = []
