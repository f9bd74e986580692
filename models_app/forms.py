"""Forms of the model pages; the same service as the API validates uploads."""

from __future__ import annotations

import json

from django import forms

from models_app.models import MLModel


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if not data:
            return []
        items = data if isinstance(data, (list, tuple)) else [data]
        return [super(MultipleFileField, self).clean(item, initial) for item in items]


OPERATION_HELP = {
    "Sync": "Real-time: JSON in, JSON out. score(data, base_path).",
    "Async": "Batch: a file in, a file out. score(data_path, model_path).",
}


class ModelUploadForm(forms.Form):
    """Empty files are accepted (an empty requirements.txt is common), as by the API.

    Required values that the upload service checks (name, entrypoint, the three files)
    are optional here, so that one post reports every problem at once, from the service,
    with the same messages as the API. They are marked aria-required for the page."""

    name = forms.CharField(
        max_length=64, required=False, help_text="Shown in lists and in the model's API docs."
    )
    group = forms.ChoiceField(help_text="The group that owns the model; its group token calls it.")
    operation = forms.ChoiceField(
        choices=MLModel.Operation.choices, initial=MLModel.Operation.SYNC, widget=forms.RadioSelect
    )
    model_reference = forms.CharField(
        max_length=100,
        required=False,
        initial="score",
        label="Entrypoint",
        help_text="The function the platform calls, defined at the top level of the script.",
    )
    python_version = forms.ChoiceField(
        label="Python version", help_text="The interpreters installed on this host."
    )
    input_type = forms.ChoiceField(
        choices=[("", "Default (json for Sync, csv for Async)"), *MLModel.InputType.choices],
        required=False,
        label="Input type",
        help_text="Sync models take JSON. Async models take csv, parquet or json files.",
    )
    source = forms.FileField(
        allow_empty_file=True,
        required=False,
        label="Scoring script (.py)",
        widget=forms.ClearableFileInput(attrs={"accept": ".py,text/x-python"}),
        help_text="Defines the entrypoint; checked by parsing, never imported by the portal.",
    )
    model = forms.FileField(
        allow_empty_file=True,
        required=False,
        label="Model file",
        help_text="Usually a pickle (.pkl), any size up to the limit.",
    )
    requirements = forms.FileField(
        allow_empty_file=True,
        required=False,
        label="requirements.txt",
        widget=forms.ClearableFileInput(attrs={"accept": ".txt,text/plain"}),
        help_text="Installed with uv into the model's own environment; may be empty.",
    )
    schema = forms.FileField(
        allow_empty_file=True,
        label="Schema (.json)",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".json,application/json"}),
        help_text="A JSON file holding one example input. Optional for Async models.",
    )
    schema_text = forms.CharField(
        label="…or paste the example",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "placeholder": '{"x": 1.5, "y": 2}'}),
        help_text="The JSON itself, instead of a file.",
    )
    env = forms.FileField(
        allow_empty_file=True,
        label=".env (secrets)",
        required=False,
        help_text="KEY=VALUE lines. Encrypted at rest; only the names are ever shown back.",
    )
    sample = forms.FileField(
        allow_empty_file=True,
        label="Sample input",
        required=False,
        help_text="Async only: an input file used to smoke-test the model during the build.",
    )
    extra = MultipleFileField(
        label="Extra files",
        required=False,
        help_text="Put beside the script, e.g. utils.py or a vocabulary file. Select several at once.",
    )

    def __init__(self, *args, groups: list[str], python_versions: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("name", "model_reference", "source", "model", "requirements"):
            self.fields[name].widget.attrs["aria-required"] = "true"
        self.fields["group"].choices = [(name, name) for name in groups]
        if len(groups) == 1:
            self.fields["group"].initial = groups[0]
        self.fields["python_version"].choices = [(v, v) for v in python_versions]
        if python_versions:
            self.fields["python_version"].initial = (
                "3.10" if "3.10" in python_versions else python_versions[-1]
            )

    def clean_schema_text(self):
        text = self.cleaned_data["schema_text"].strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"This is not valid JSON: {exc}.") from None

    def clean(self):
        data = super().clean()
        if data.get("schema") and data.get("schema_text") is not None:
            self.add_error("schema_text", "Give the schema as a file or as text, not both.")
        return data


class ModelSettingsForm(forms.Form):
    """What can change on a Sync model without a rebuild (as PATCH /api/v1/models/<hash>)."""

    replicas = forms.IntegerField(
        min_value=1, max_value=16, help_text="Warm processes on each node; more use more cores."
    )
    request_timeout = forms.IntegerField(
        min_value=1,
        max_value=3600,
        required=False,
        label="Timeout (s)",
        help_text="Seconds per request. Empty: the default.",
    )


class ModelFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", max_length=100)
    group = forms.ChoiceField(required=False)
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status but Deleted"), *MLModel.Status.choices]
    )
    operation = forms.ChoiceField(
        required=False, choices=[("", "Sync and Async"), *MLModel.Operation.choices]
    )

    def __init__(self, *args, groups: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].choices = [("", "All my groups"), *((name, name) for name in groups)]
        self.fields["q"].widget.attrs["placeholder"] = "Name or hash"
