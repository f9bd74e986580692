from django.db import migrations, models
from django.db.models import Max


def from_the_audit_trail(apps, schema_editor):
    """A live version chosen by a person is a version_live event with an actor (one a
    first deployment makes has none)."""
    ModelEvent = apps.get_model("models_app", "ModelEvent")
    MLModel = apps.get_model("models_app", "MLModel")
    chosen = (
        ModelEvent.objects.filter(action="version_live", actor__isnull=False)
        .values("model")
        .annotate(last=Max("at"))
    )
    for row in chosen:
        MLModel.objects.filter(pk=row["model"]).update(live_chosen_at=row["last"])


class Migration(migrations.Migration):
    dependencies = [
        ("models_app", "0011_call_lookup_notifications"),
    ]

    operations = [
        migrations.AddField(
            model_name="mlmodel",
            name="live_chosen_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(from_the_audit_trail, migrations.RunPython.noop),
    ]
