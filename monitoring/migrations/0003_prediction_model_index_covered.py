"""The prediction records' index on model alone goes: (model, at) covers every lookup by
model, and each index is one more B-tree insert on every recorded call.

Dropped by name rather than through AlterField, which on SQLite copies the whole table
(every recorded call) to a new one.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEX = '"monitoring_predictionrecord_model_id_c69cd327"'


class Migration(migrations.Migration):
    dependencies = [
        ("models_app", "0010_modelbuild_queued_at"),
        ("monitoring", "0002_prediction_version"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="predictionrecord",
                    name="model",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="predictions",
                        to="models_app.mlmodel",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    reverse_sql=f'CREATE INDEX {INDEX} ON "monitoring_predictionrecord" ("model_id")',
                ),
            ],
        ),
    ]
