import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("models_app", "0008_schema_keeps_key_order"),
    ]

    operations = [
        # A fixed count becomes the floor: a model that had 2 replicas keeps 2 up.
        migrations.RenameField(model_name="mlmodel", old_name="replicas", new_name="min_replicas"),
        migrations.AlterField(
            model_name="mlmodel",
            name="min_replicas",
            field=models.PositiveSmallIntegerField(
                default=1,
                help_text="Warm runner processes per node (Sync) kept up while the model is in use.",
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(16),
                ],
            ),
        ),
        migrations.AddField(
            model_name="mlmodel",
            name="max_replicas",
            field=models.PositiveSmallIntegerField(
                blank=True,
                help_text="Runner processes per node the model may grow to under load (empty: the node's cores).",
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(16),
                ],
            ),
        ),
    ]
