"""Contract: the admin link becomes required, once no organization lacks one.

`EnforceNotNull` counts the empty rows itself, through this migration's
historical model, and refuses, changing nothing, while any is left (the
message names `manage.py backfill start admin_groups`; see docs/runbook.md).
Non-atomic, so that validating the check constraint does not hold its lock
for the whole migration; each DDL statement waits for a gap in the table's
locks, then runs under a short lock timeout.
"""

from django.db import migrations

from backfill import EnforceNotNull


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("organizations", "0005_organization_admin_guard")]

    operations = [
        EnforceNotNull("organization", "admin", backfill="admin_groups"),
    ]
