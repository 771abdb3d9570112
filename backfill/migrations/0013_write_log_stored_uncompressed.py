"""The write log's arrays stored out of line without compression.

A batch of 100,000 rows logs about a megabyte of keys and values; compressing
it (pglz) cost a batch of a cheap expression about a tenth of its time, for a
log about twice as small (docs/benchmarks.md, "Cost per row"). Only new rows
are stored this way. Changing a column's storage is a catalog change, but it
takes the table's strongest lock: behind a batch in flight it waits at most
five seconds (batches queued behind it meanwhile wait too, and may count a
lock timeout), and `migrate` can be run again. Best run with jobs paused.
"""

from django.db import migrations

LOCK_TIMEOUT = "SET LOCAL lock_timeout = '5s'"


def storage(kind: str) -> str:
    return (
        f"ALTER TABLE backfill_write ALTER COLUMN keys SET STORAGE {kind}, "
        f'ALTER COLUMN "values" SET STORAGE {kind}'
    )


class Migration(migrations.Migration):
    dependencies = [("backfill", "0012_merge_permissions_and_throttled_until")]

    operations = [
        migrations.RunSQL(
            [LOCK_TIMEOUT, storage("EXTERNAL")], reverse_sql=[LOCK_TIMEOUT, storage("EXTENDED")]
        )
    ]
