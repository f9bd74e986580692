"""Forms of the model pages, and the one definition of a model upload.

`ModelUploadForm` is what the upload page and `POST /api/v1/models` both validate
through, into one `services.ModelUpload`; the API's OpenAPI request body is read off its
fields (models_app/api.py). One definition, so the page, the API and its docs cannot
disagree about a field, a default or a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from groups.access import groups_for
from groups.forms import DefaultBooleanField, refuse_control_characters
from groups.uploads import LostPart, lost_part_message
from models_app import interpreters
from models_app.models import MAX_REPLICAS, MLModel
from models_app.services import INLINE_SCHEMA_NAME, ModelUpload, NamedFile, min_replicas_refusal
from models_app.validation import (
    TextKind,
    UploadError,
    check_entrypoint_name,
    check_source,
    check_unique_names,
    decode_upload,
    parse_dotenv,
    parse_requirements,
    parse_schema,
    sanitize_filename,
)

# Asked for when the upload names none (the page preselects it when the host has it).
DEFAULT_PYTHON_VERSION = "3.10"
NAME_TOO_LONG = _("The name has %(show_value)d characters; the limit is %(limit_value)d.")


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


class FileOrTextInput(forms.FileInput):
    """A file input whose field may also come as a plain form field (API clients, the SDK)."""

    def value_from_datadict(self, data, files, name):
        upload = super().value_from_datadict(data, files, name)
        return upload if upload is not None else data.get(name)

    def value_omitted_from_data(self, data, files, name):
        return name not in files and name not in data


class FileOrTextField(forms.Field):
    """An uploaded file, or the same content as text; empty is None."""

    widget = FileOrTextInput

    def to_python(self, value):
        if isinstance(value, UploadedFile):
            return value
        if isinstance(value, str) and value.strip():
            return value.strip()
        return None


class GroupField(forms.ModelChoiceField):
    """One of the user's groups, by name: it owns what the form creates.

    Its choices are the user's groups, set per request by `offer_to(user)`.
    """

    def __init__(self, *, required_message: str, help_text: str, label=None) -> None:
        super().__init__(
            queryset=None,
            label=label or _("Group"),
            to_field_name="name",
            empty_label=None,
            help_text=help_text,
            error_messages={
                "required": required_message,
                "invalid_choice": _(
                    "Select a valid choice: you are not a member of a group named '%(value)s'. "
                    "Use one of your groups."
                ),
            },
        )

    def offer_to(self, user) -> None:
        self.queryset = groups_for(user).order_by("name")


class PythonVersionField(forms.CharField):
    """The Python to run on: one of the interpreters installed on this host, by minor
    version or exactly; DEFAULT_PYTHON_VERSION when the request leaves it out.

    `offer()` discovers the interpreters, per request: the page's <select> lists their
    minor versions, and a value none of them has is refused, naming those there are.
    """

    widget = forms.Select

    def __init__(self) -> None:
        super().__init__(
            max_length=16,
            required=False,
            empty_value=DEFAULT_PYTHON_VERSION,
            label=_("Python version"),
            help_text=_("One of the interpreters installed on this host: 3.9, or exactly 3.9.18."),
        )
        self.interpreters: list[interpreters.Interpreter] = []

    def widget_attrs(self, widget) -> dict[str, Any]:
        attrs = super().widget_attrs(widget)
        attrs.pop("maxlength", None)  # not an attribute of <select>
        return attrs

    def offer(self) -> None:
        self.interpreters = interpreters.discover_interpreters(settings.PYTHON_SEARCH_PATHS)
        versions = sorted({i.minor for i in self.interpreters}, key=lambda v: tuple(map(int, v.split("."))))
        self.widget.choices = [(v, v) for v in versions]
        if versions:
            self.initial = DEFAULT_PYTHON_VERSION if DEFAULT_PYTHON_VERSION in versions else versions[-1]

    def clean(self, value: Any) -> str:
        value = super().clean(value)
        try:
            found = interpreters.find_interpreter(value, self.interpreters)
        except interpreters.InterpreterNotFound as exc:
            # Opens like the group's message (both are a choice on the page); the rest
            # names the versions there are.
            raise forms.ValidationError(
                _("Select a valid choice: %(reason)s"), params={"reason": exc}
            ) from None
        # Stored as the interpreter names it ("3.09" is 3.9), exactly when a patch was asked for.
        return found.version if value.strip().count(".") == 2 else found.minor


class UploadCheckingForm(forms.Form):
    """What every upload form shares: files get safe names, text files are read as the
    program that uses them reads them (validation.encoding), a validation check's
    UploadError becomes an error of its field, and a file part that was sent but never
    arrived (`lost_parts`, groups.uploads) is named at its field instead of the field
    asking for a file as if none had been sent."""

    # The pages post with novalidate (the server reports every problem at once), so
    # required fields carry aria-required rather than a `required` the browser ignores.
    use_required_attribute = False
    # A plain file name for each file field, for the messages about a lost part.
    example_names: dict[str, str] = {}
    # Fields of the upload this form takes from elsewhere (and so does not have), with why:
    # sent anyway, they are refused rather than dropped without a word.
    taken_elsewhere: tuple[tuple[str, ...], Any] = ((), "")

    def __init__(self, *args, lost_parts: Sequence[LostPart] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.lost_parts = list(lost_parts)

    def clean(self) -> dict[str, Any]:
        self._name_lost_parts()
        self._refuse_repeated_files()
        self._refuse_fields_taken_elsewhere()
        return super().clean()

    def _refuse_fields_taken_elsewhere(self) -> None:
        names, why = self.taken_elsewhere
        for name in names:
            if name in self.data or name in self.files:
                # Not a field of this form, so not add_error(): the API names it all the same.
                self._errors.setdefault(name, self.error_class()).append(str(why) % {"field": name})

    def _refuse_repeated_files(self) -> None:
        """A field that takes one file, sent several times: Django keeps the last one, so
        the others would be dropped without a word."""
        for name, field in self.fields.items():
            if isinstance(field.widget, MultipleFileInput) or not isinstance(field.widget, forms.FileInput):
                continue
            sent = len(self.files.getlist(name)) if hasattr(self.files, "getlist") else 0
            if sent > 1:
                self.add_error(
                    name,
                    gettext("%(count)s files were sent in this field, which takes one.") % {"count": sent},
                )

    def _name_lost_parts(self) -> None:
        """Each lost part of one of the form's file fields becomes that field's error (an
        optional file too: a .env that did not arrive must not deploy a model without its
        secrets); a part that names no field, a form error. Parts of fields the form does
        not have are ignored, as those fields would be."""
        emptied: set[str] = set()
        for part in self.lost_parts:
            if part.field:
                field = part.field
                if field not in self.fields or not isinstance(self.fields[field].widget, forms.FileInput):
                    continue
            else:
                field = self._field_for_name(part.name)
            message = lost_part_message(part, expected=field, example=self._example_name(field))
            if not part.field:
                self.add_error(None, message)
                continue
            if field not in emptied and not self._sent(field):
                # Its errors ("upload the script") only say that nothing arrived.
                self._errors.pop(field, None)
                emptied.add(field)
            self.add_error(field, message)

    def _sent(self, field: str) -> bool:
        return field in self.files or field in self.data

    def _example_name(self, field: str) -> str:
        return self.example_names.get(field) or next(iter(self.example_names.values()), "file.txt")

    def _field_for_name(self, name: str) -> str:
        """The file field a file of this name most likely belongs in (for a part naming no field)."""
        for field, example in self.example_names.items():
            if name == example:
                return field
        suffix = name.rpartition(".")[2].lower() if "." in name else ""
        for field, example in self.example_names.items():
            if suffix and example.rpartition(".")[2].lower() == suffix:
                return field
        return next(iter(self.example_names), "file")

    def _named(self, field: str) -> NamedFile | None:
        upload = self.cleaned_data[field]
        if upload is None:
            return None
        return NamedFile(self._check(sanitize_filename, upload.name, field=field), upload)

    def _text(self, field: str, named: NamedFile, kind: TextKind) -> str | None:
        """A text file's content, or None after adding the error to `field`."""
        return self._attempt(_read_text, named, field, kind)

    def _attempt(self, check, *args, **kwargs):
        """Run a check; an UploadError becomes an error of its field, and None is returned."""
        try:
            return check(*args, **kwargs)
        except UploadError as exc:
            self.add_error(exc.field, exc.message)
            return None

    @staticmethod
    def _check(check, *args, **kwargs):
        """Run a check inside a clean_<field>: an UploadError becomes that field's error."""
        try:
            return check(*args, **kwargs)
        except UploadError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_extra(self) -> list[NamedFile]:
        """The extra files (a form's `extra` field), each with its safe name."""
        extra, problems = [], []
        for upload in self.cleaned_data["extra"]:
            try:
                extra.append(NamedFile(sanitize_filename(upload.name, field="extra"), upload))
            except UploadError as exc:
                problems.append(exc.message)
        if problems:
            raise forms.ValidationError(problems)
        return extra

    def _requirements(self, named: NamedFile | None) -> list[str]:
        """The requirement lines of an uploaded requirements.txt; [] after adding its error."""
        if named is None:
            return []
        text = self._text("requirements", named, "requirements")
        if text is None:
            return []
        return self._attempt(parse_requirements, text, allow_options=settings.ALLOW_REQUIREMENT_OPTIONS) or []

    def _env_values(self, named: NamedFile | None) -> dict[str, str]:
        """The variables of an uploaded .env; {} after adding its error."""
        if named is None:
            return {}
        text = self._text("env", named, "text")
        return (self._attempt(parse_dotenv, text) or {}) if text is not None else {}


class ModelUploadForm(UploadCheckingForm):
    """A new model: its fields, defaults and every check, for the page and the API.

    Every check runs on one post and every problem is reported at once, each at its
    field, before anything is stored. Empty files are accepted (an empty
    requirements.txt is common). A valid form's `upload` is the `ModelUpload` to hand
    to `services.create_model`.
    """

    example_names = {
        "source": "app.py",
        "model": "model.pkl",
        "requirements": "requirements.txt",
        "schema": "schema.json",
        "env": ".env",
        "sample": "input.csv",
        "extra": "utils.py",
    }

    name = forms.CharField(
        max_length=64,
        validators=[refuse_control_characters],
        label=_("Name"),
        help_text=_("Shown in lists and in the model's API docs."),
        error_messages={
            "required": _("Give the model a name."),
            "max_length": NAME_TOO_LONG,
        },
    )
    group = GroupField(
        required_message=_("Give the name of one of your groups: it will own the model."),
        help_text=_("The name of one of your groups: it owns the model, and its group token calls it."),
    )
    operation = forms.TypedChoiceField(
        choices=MLModel.Operation.choices,
        empty_value=MLModel.Operation.SYNC,
        required=False,
        initial=MLModel.Operation.SYNC,
        widget=forms.RadioSelect,
        label=_("Operation"),
        help_text=_("Sync: real-time, JSON in, JSON out. Async: batch, a file in, a file out."),
        error_messages={"invalid_choice": _("operation must be 'Sync' or 'Async', not '%(value)s'.")},
    )
    model_reference = forms.CharField(
        max_length=100,
        initial="score",
        label=_("Entrypoint"),
        help_text=_("The function the platform calls, defined at the top level of the script, e.g. score."),
        error_messages={"required": _("Give the name of the entrypoint function, e.g. 'score'.")},
    )
    python_version = PythonVersionField()
    input_type = forms.TypedChoiceField(
        choices=[("", _("Default (json for Sync, csv for Async)")), *MLModel.InputType.choices],
        empty_value=None,
        required=False,
        label=_("Input type"),
        help_text=_("Sync models take JSON. Async models take csv (the default), parquet or json files."),
        error_messages={"invalid_choice": _("input_type must be one of json, csv, parquet.")},
    )
    allow_network = DefaultBooleanField(
        default=True,
        label=_("Allow network access"),
        help_text=_("Let the model's code open outbound network connections."),
    )
    source = forms.FileField(
        allow_empty_file=True,
        label=_("Scoring script (.py)"),
        widget=forms.ClearableFileInput(attrs={"accept": ".py,text/x-python"}),
        help_text=_("Defines the entrypoint; checked by parsing, never imported by the portal."),
        error_messages={"required": _("Upload the scoring script (.py).")},
    )
    model = forms.FileField(
        allow_empty_file=True,
        label=_("Model file"),
        help_text=_("Usually a pickle (.pkl), any size up to the limit."),
        error_messages={"required": _("Upload the model file (e.g. model.pkl).")},
    )
    requirements = forms.FileField(
        allow_empty_file=True,
        label=_("requirements.txt"),
        widget=forms.ClearableFileInput(attrs={"accept": ".txt,text/plain"}),
        help_text=_("Installed with uv into the model's own environment; may be empty."),
        error_messages={"required": _("Upload requirements.txt.")},
    )
    schema = FileOrTextField(
        label=_("Schema (.json)"),
        required=False,
        widget=FileOrTextInput(attrs={"accept": ".json,application/json"}),
        help_text=_(
            "A JSON file holding one example input (API clients may send the JSON itself "
            "as this field). Required for Sync models."
        ),
    )
    schema_text = forms.CharField(
        label=_("…or paste the example"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "placeholder": '{"x": 1.5, "y": 2}'}),
        help_text=_("The JSON itself, instead of a file."),
    )
    env = forms.FileField(
        allow_empty_file=True,
        label=_(".env (secrets)"),
        required=False,
        help_text=_("KEY=VALUE lines. Encrypted at rest; only the names are ever shown back."),
    )
    sample = forms.FileField(
        allow_empty_file=True,
        label=_("Sample input"),
        required=False,
        help_text=_("Async only: an input file used to smoke-test the model during the build."),
    )
    extra = MultipleFileField(
        label=_("Extra files"),
        required=False,
        help_text=_("Put beside the script, e.g. utils.py or a vocabulary file (several: repeat the field)."),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.upload: ModelUpload | None = None
        # A subclass may take some fields from elsewhere (training.forms.PromoteForm).
        if "group" in self.fields:
            self.fields["group"].offer_to(user)
        if "python_version" in self.fields:
            self.fields["python_version"].offer()
        for name in ("name", "group", "model_reference", "source", "model", "requirements"):
            if name in self.fields and self.fields[name].required:
                self.fields[name].widget.attrs["aria-required"] = "true"

    # --- one field at a time ---------------------------------------------------------

    def clean_model_reference(self) -> str:
        value = self.cleaned_data["model_reference"]
        self._check(check_entrypoint_name, value)
        return value

    def clean_source(self) -> NamedFile | None:
        named = self._named("source")
        if named is not None and not named.name.endswith(".py"):
            raise forms.ValidationError(
                _("'%(name)s' is not a .py file. Upload the scoring script."), params={"name": named.name}
            )
        return named

    def clean_model(self) -> NamedFile | None:
        return self._named("model")

    def clean_requirements(self) -> NamedFile | None:
        return self._named("requirements")

    def clean_schema(self) -> NamedFile | str | None:
        value = self.cleaned_data["schema"]
        return self._named("schema") if isinstance(value, UploadedFile) else value

    def clean_env(self) -> NamedFile | None:
        return self._named("env")

    def clean_sample(self) -> NamedFile | None:
        return self._named("sample")

    # --- the checks that need several fields or a file's content ----------------------

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        operation = data.get("operation")
        sync = operation == MLModel.Operation.SYNC

        input_type = data.get("input_type")
        if operation and "input_type" not in self.errors:
            if input_type is None:
                input_type = "json" if sync else "csv"
            elif sync and input_type != "json":
                self.add_error("input_type", _("Sync models take JSON: input_type must be 'json'."))

        source, model_reference = data.get("source"), data.get("model_reference")
        if source is not None and model_reference:
            text = self._text("source", source, "python")
            if text is not None:
                self._attempt(check_source, text, model_reference, filename=source.name)

        requirements = self._requirements(data.get("requirements"))
        schema = self._schema(data, require_object=sync)
        env_values = self._env_values(data.get("env"))

        if data.get("sample") is not None and sync:
            self.add_error("sample", _("A sample input file is only used by Async models."))

        self._attempt(check_unique_names, self._stored_names(data))

        if not self._errors:
            self.upload = ModelUpload(
                name=data["name"],
                group=data["group"],
                operation=operation,
                model_reference=model_reference,
                python_version=data["python_version"],
                input_type=input_type,
                allow_network=data["allow_network"],
                source_file=source,
                model_file=data["model"],
                requirements_file=data["requirements"],
                requirements=requirements,
                schema=schema,
                schema_file=data["schema"] if isinstance(data["schema"], NamedFile) else None,
                env_values=env_values,
                env_given=data.get("env") is not None,
                sample_file=data["sample"],
                extra_files=data["extra"],
            )
        return data

    def _schema(self, data: dict[str, Any], *, require_object: bool) -> Any:
        """The example input, from a file, the schema field as text, or schema_text."""
        if "schema" in self.errors or "schema_text" in self.errors:
            return None
        given = [(f, data[f]) for f in ("schema", "schema_text") if data.get(f)]
        if len(given) > 1:
            self.add_error("schema_text", _("Give the schema as a file or as text, not both."))
            return None
        if not given:
            if require_object:
                self.add_error(
                    "schema",
                    _(
                        "Sync models need a schema: a JSON file with one example input, used for the "
                        "smoke test and the docs."
                    ),
                )
            return None
        field, value = given[0]
        text = self._text(field, value, "json") if isinstance(value, NamedFile) else value
        if text is None:
            return None
        return self._attempt(parse_schema, text, require_object=require_object, field=field)

    def _stored_names(self, data: dict[str, Any]) -> dict[str, list[str]]:
        """Field -> the names its files get in the model's folder (the .env is not stored)."""
        named: dict[str, list[str]] = {}
        schema = data.get("schema") or data.get("schema_text")
        if schema is not None:
            named["schema"] = [schema.name if isinstance(schema, NamedFile) else INLINE_SCHEMA_NAME]
        for field in ("source", "model", "requirements", "sample"):
            if data.get(field) is not None:
                named[field] = [data[field].name]
        if data.get("extra"):
            named["extra"] = [named_file.name for named_file in data["extra"]]
        return named


def _read_text(named: NamedFile, field: str, kind: TextKind) -> str:
    upload = named.file
    if upload.size is not None and upload.size > settings.MAX_TEXT_FILE_BYTES:
        raise UploadError(
            field,
            gettext("'%(name)s' is %(size)s bytes; text files are limited to %(limit)s KB.")
            % {"name": named.name, "size": upload.size, "limit": settings.MAX_TEXT_FILE_BYTES // 1024},
        )
    upload.seek(0)
    data = upload.read()
    text = decode_upload(data, kind, field=field, name=named.name)
    utf8 = text.encode("utf-8")
    if kind != "python" and utf8 != data:
        # Stored as UTF-8, so the files in the model's folder say what was checked. A script
        # keeps its bytes: Python reads them by its coding line, as the check did.
        upload.seek(0)
        upload.truncate()
        upload.write(utf8)
        upload.size = len(utf8)
    upload.seek(0)
    return text


class ModelVersionForm(ModelUploadForm):
    """A new version of an existing model: the upload's fields and checks, with the
    name, group and operation taken from the model (callers of its run URL keep
    sending the same kind of request)."""

    name = None
    group = None
    operation = None
    taken_elsewhere = (
        ("name", "group", "operation"),
        _("A new version keeps the model's %(field)s: leave %(field)s out."),
    )

    def __init__(self, *args, user, model: MLModel, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        self.model = model.root
        if "input_type" in self.fields and not self.model.is_sync:
            self.fields["input_type"].initial = self.model.input_type

    def clean(self) -> dict[str, Any]:
        model = self.model
        if model.status == MLModel.Status.DELETED:
            raise forms.ValidationError(_("This model is deleted: upload a new model instead."))
        self.cleaned_data.update(name=model.name, group=model.group, operation=model.operation)
        return super().clean()


class ModelSettingsForm(forms.Form):
    """What can change on a Sync model without a rebuild (as PATCH /api/v1/models/<hash>)."""

    min_replicas = forms.IntegerField(
        min_value=1,
        max_value=MAX_REPLICAS,
        label=_("Minimum replicas"),
        help_text=_("Warm processes kept on each node while the model is in use."),
    )
    max_replicas = forms.IntegerField(
        min_value=1,
        max_value=MAX_REPLICAS,
        required=False,
        label=_("Maximum replicas"),
        help_text=_("Processes each node may add while calls queue. Empty: the node's cores."),
    )
    request_timeout = forms.IntegerField(
        min_value=1,
        max_value=3600,
        required=False,
        label=_("Timeout (s)"),
        help_text=_("Seconds per request. Empty: the default."),
    )

    def __init__(self, *args, model: MLModel, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.model = model

    def clean(self) -> dict:
        data = super().clean()
        low, high = data.get("min_replicas"), data.get("max_replicas")
        refusal = min_replicas_refusal(self.model, low) if low is not None else None
        if refusal:
            self.add_error("min_replicas", refusal)
        elif low is not None and high is not None and high < low:
            self.add_error(
                "max_replicas", _("The maximum must be at least the minimum (%(low)s).") % {"low": low}
            )
        return data


class ModelFilterForm(forms.Form):
    q = forms.CharField(required=False, label=_("Search"), max_length=100)
    group = forms.ChoiceField(required=False)
    status = forms.ChoiceField(
        required=False,
        # The portal calls Ready (build queued) "Queued", as its badges do; the value stays the state's name.
        choices=[
            ("", _("Any status but Deleted")),
            *(
                (value, "Queued" if value == MLModel.Status.READY else label)
                for value, label in MLModel.Status.choices
            ),
        ],
    )
    operation = forms.ChoiceField(
        required=False, label=_("Operation"), choices=[("", _("Sync and Async")), *MLModel.Operation.choices]
    )

    def __init__(self, *args, groups: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].choices = [("", _("All my groups")), *((name, name) for name in groups)]
        self.fields["q"].widget.attrs["placeholder"] = _("Name or hash")
