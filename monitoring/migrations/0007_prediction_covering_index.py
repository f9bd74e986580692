"""The recorded calls' index by model becomes a covering one: (model, at) gains the
columns the call statistics and the API's counts read (status_code, latency_ms, version,
live), so those are answered from the index alone instead of visiting every row of the
window (each row carries a request and an answer): 215k calls a day took the model page
hundreds of milliseconds.

Still one index by model, not a second one: each index is one more B-tree insert on every
recorded call (0003). The new one is made before the old one goes, so lookups by model
always have one; both are plain CREATE / DROP INDEX, no table copy on SQLite.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0006_mark_earlier_trial_calls"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="predictionrecord",
            index=models.Index(
                fields=["model", "at", "status_code", "latency_ms", "version", "live"],
                name="monitoring_calls_by_model",
            ),
        ),
        migrations.RemoveIndex(
            model_name="predictionrecord",
            name="monitoring__model_i_cfaf1d_idx",
        ),
    ]
