"""Pacing: per-job health budgets, what the workers found, and each batch's pause."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("backfill", "0007_slice_keys_as_text"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="latency_baseline_ms",
            field=models.FloatField(null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="max_latency_ratio",
            field=models.FloatField(default=2.0),
        ),
        migrations.AddField(
            model_name="job",
            name="max_replica_lag_seconds",
            field=models.FloatField(default=5.0),
        ),
        migrations.AddField(
            model_name="job",
            name="max_transaction_age_seconds",
            field=models.FloatField(default=300.0),
        ),
        migrations.AddField(
            model_name="job",
            name="max_wal_mb_per_second",
            field=models.FloatField(default=0.0),
        ),
        migrations.AddField(
            model_name="job",
            name="pace",
            field=models.BooleanField(default=True),
        ),
        migrations.AddField(
            model_name="job",
            name="pace_limit",
            field=models.CharField(blank=True, max_length=30),
        ),
        migrations.AddField(
            model_name="job",
            name="pace_pause_ms",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="job",
            name="throttled_seconds",
            field=models.FloatField(default=0.0),
        ),
        migrations.AddField(
            model_name="sample",
            name="limit",
            field=models.CharField(blank=True, max_length=30),
        ),
        migrations.AddField(
            model_name="sample",
            name="pause_ms",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
