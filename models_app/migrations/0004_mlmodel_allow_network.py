from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("models_app", "0003_execution_timeout"),
    ]

    operations = [
        migrations.AddField(
            model_name="mlmodel",
            name="allow_network",
            field=models.BooleanField(
                default=True, help_text="Let the model's code open outbound network connections."
            ),
        ),
    ]
