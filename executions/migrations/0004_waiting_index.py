"""Each model's waiting executions by age, for dispatch (executions.services): it seeks
each model's oldest waiting execution instead of passing over all of them."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0003_execution_model_requested_index"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="execution",
            index=models.Index(fields=["model", "status", "queued_at", "id"], name="execution_waiting"),
        ),
    ]
