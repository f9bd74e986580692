"""Calls recorded before `live` existed (0004 set them all live) that a version other than
the live one answered: a candidate's trial through its own URL. They are not production
input, so monitoring must leave them out, as it does for calls recorded since.

Which version was live when comes from the model's `version_live` events, which exist
since versions do; before a model's first one, version 1 was live. Only False is ever
written: a call a version answered while it was live stays live.
"""

import re

from django.db import migrations

VERSION_IN_DETAIL = re.compile(r"^version (\d+) ")


def live_spans(events):
    """[(from, until, live version number)] from a model's (at, detail) version_live events,
    oldest first; None is an open end."""
    spans, live, since = [], 1, None
    for at, detail in events:
        found = VERSION_IN_DETAIL.match(detail)
        if found is None:
            continue
        spans.append((since, at, live))
        live, since = int(found.group(1)), at
    spans.append((since, None, live))
    return spans


def mark_trial_calls(apps, schema_editor):
    MLModel = apps.get_model("models_app", "MLModel")
    ModelEvent = apps.get_model("models_app", "ModelEvent")
    PredictionRecord = apps.get_model("monitoring", "PredictionRecord")
    # Only a model with later versions can have had calls answered by a version not live.
    with_versions = MLModel.objects.filter(line__isnull=True, later_versions__isnull=False).distinct()
    for model_pk in with_versions.values_list("pk", flat=True).iterator():
        events = (
            ModelEvent.objects.filter(model_id=model_pk, action="version_live")
            .order_by("at", "pk")
            .values_list("at", "detail")
        )
        for since, until, live in live_spans(events):
            calls = PredictionRecord.objects.filter(model_id=model_pk, live=True).exclude(version=live)
            if since is not None:
                calls = calls.filter(at__gte=since)
            if until is not None:
                calls = calls.filter(at__lt=until)
            calls.update(live=False)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0005_prediction_record_payload_kept"),
        ("models_app", "0011_call_lookup_notifications"),
    ]

    operations = [migrations.RunPython(mark_trial_calls, migrations.RunPython.noop, elidable=True)]
