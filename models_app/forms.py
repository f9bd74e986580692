"""The browser form for a new model; the same service as the API validates it."""

from __future__ import annotations

from django import forms

from models_app.models import MLModel


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None):
        if not data:
            return []
        items = data if isinstance(data, (list, tuple)) else [data]
        return [super(MultipleFileField, self).clean(item, initial) for item in items]


class ModelUploadForm(forms.Form):
    name = forms.CharField(max_length=64)
    group = forms.ChoiceField(help_text="The group that owns the model and its token.")
    operation = forms.ChoiceField(
        choices=MLModel.Operation.choices, help_text="Sync: JSON in, JSON out. Async: a file in, a file out."
    )
    model_reference = forms.CharField(
        max_length=100,
        initial="score",
        label="Entrypoint",
        help_text="Name of the function to call, e.g. score.",
    )
    python_version = forms.ChoiceField(help_text="Interpreters available on this host.")
    input_type = forms.ChoiceField(
        choices=[("", "default (json for Sync, csv for Async)"), *MLModel.InputType.choices], required=False
    )
    source = forms.FileField(
        label="Scoring script (.py)", widget=forms.ClearableFileInput(attrs={"accept": ".py"})
    )
    model = forms.FileField(label="Model file", help_text="Usually a .pkl.")
    requirements = forms.FileField(
        label="requirements.txt", widget=forms.ClearableFileInput(attrs={"accept": ".txt"})
    )
    schema = forms.FileField(
        label="Schema (JSON example of one input)",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".json,application/json"}),
        help_text="Required for Sync models.",
    )
    env = forms.FileField(
        label=".env (secrets)", required=False, help_text="Stored encrypted; only names are shown back."
    )
    sample = forms.FileField(
        label="Sample input (Async)", required=False, help_text="Used to smoke-test Async models."
    )
    extra = MultipleFileField(
        label="Extra files", required=False, help_text="Put beside the source, e.g. utils.py."
    )

    def __init__(self, *args, groups: list[str], python_versions: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].choices = [(name, name) for name in groups]
        self.fields["python_version"].choices = [(v, v) for v in python_versions]
        if python_versions:
            self.fields["python_version"].initial = (
                "3.10" if "3.10" in python_versions else python_versions[-1]
            )
