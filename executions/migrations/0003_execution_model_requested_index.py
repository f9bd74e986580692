"""An index on (model, requested_at): the dashboard counts the last 24 hours' executions of
the models a user sees, and the model lists look up each model's latest one; without it
both read every execution of those models. CREATE INDEX only: no table copy."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0002_execution_version"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="execution",
            index=models.Index(fields=["model", "requested_at"], name="execution_model_requested"),
        ),
    ]
