"""Recorded calls counted by the hour (HourlyCalls), so the call statistics sum a few rows
instead of counting a day's records, and the hours already recorded counted once here.

The backfill is one GROUP BY over the records' index by model (it reads no request or
answer). An upgrade stops every node before it migrates (docs/deployment.md), so no call
is recorded between the backfill and the code that counts them.
"""

from datetime import UTC

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Count, Q
from django.db.models.functions import TruncHour

BATCH = 1000


def count_recorded_hours(apps, schema_editor):
    PredictionRecord = apps.get_model("monitoring", "PredictionRecord")
    HourlyCalls = apps.get_model("monitoring", "HourlyCalls")
    hours = (
        PredictionRecord.objects.order_by()
        .annotate(hour=TruncHour("at", tzinfo=UTC))
        .values("model_id", "hour")
        .annotate(calls=Count("pk"), errors=Count("pk", filter=Q(status_code__gte=400)))
    )
    # A batch at a time: the whole list of a large installation's hours took 700 MB for a
    # million (an upgrade audit), and grows with models and hours.
    batch = []
    for row in hours.iterator(chunk_size=BATCH):
        batch.append(HourlyCalls(**row))
        if len(batch) == BATCH:
            HourlyCalls.objects.bulk_create(batch)
            batch = []
    HourlyCalls.objects.bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [
        ("models_app", "0013_modelbuild_status_index"),
        ("monitoring", "0007_prediction_covering_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="HourlyCalls",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("hour", models.DateTimeField(help_text="The start of the hour, UTC.")),
                ("calls", models.PositiveBigIntegerField(default=0)),
                (
                    "errors",
                    models.PositiveBigIntegerField(
                        default=0, help_text="Calls answered with a status of 400 or more."
                    ),
                ),
                (
                    "model",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="hourly_calls",
                        to="models_app.mlmodel",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "hourly calls",
                "ordering": ["-hour"],
                "constraints": [
                    models.UniqueConstraint(fields=("model", "hour"), name="monitoring_hourly_calls_once")
                ],
            },
        ),
        migrations.RunPython(count_recorded_hours, migrations.RunPython.noop, elidable=True),
    ]
