"""Expand, continued: filled admin links stay filled, and the empty ones are indexed.

From here on no writer (a stale instance saved by this app, an older app
version, `update()`, raw SQL) can set a filled `admin_id` back to NULL, while
inserts without it keep working for servers still on the old code; the
pending rows get a partial index built concurrently. See backfill/schema/guard.py and
docs/expand.md. Non-atomic: the index is built CONCURRENTLY.
"""

from django.db import migrations

from backfill import GuardFilledColumn


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("organizations", "0004_organization_search_name_expand")]

    operations = [
        GuardFilledColumn("organization", "admin"),
    ]
