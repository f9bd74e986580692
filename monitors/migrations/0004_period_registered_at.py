from django.db import migrations, models


def stamp_current_registrations(apps, schema_editor):
    """Periods asked for since their monitor's last registration, of its period kind, were
    counted under it; older ones belong to an earlier registration (left unstamped)."""
    Monitor = apps.get_model("monitors", "Monitor")
    Period = apps.get_model("monitors", "Period")
    for monitor in Monitor.objects.only("pk", "period", "registered_at").iterator():
        Period.objects.filter(
            monitor=monitor, kind=monitor.period, requested_at__gte=monitor.registered_at
        ).update(registered_at=monitor.registered_at)


class Migration(migrations.Migration):
    dependencies = [
        ("monitors", "0003_webhook_secret"),
    ]

    operations = [
        migrations.AddField(
            model_name="period",
            name="registered_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(stamp_current_registrations, migrations.RunPython.noop),
    ]
