"""An index on the builds' status: /metrics counts builds by status on every scrape, and
without it read every build (each with its log). CREATE INDEX only: no table copy."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("models_app", "0012_live_chosen_at"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="modelbuild",
            index=models.Index(fields=["status"], name="modelbuild_status"),
        ),
    ]
