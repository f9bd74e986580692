"""Model workflows: upload (validate, store), build queueing and lifecycle actions.

Views call these; they never touch files or statuses themselves.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from models_app import interpreters, validation
from models_app.models import MLModel, ModelBuild, ModelEvent
from models_app.validation import UploadError
from portal import crypto
from portal.access import groups_for
from portal.models import Group

logger = logging.getLogger(__name__)


@dataclass
class ModelUpload:
    """Everything a user sends to create a model (the API and the form fill this in)."""

    name: str
    group: str
    operation: str
    model_reference: str
    python_version: str
    source: UploadedFile
    model: UploadedFile
    requirements: UploadedFile
    input_type: str | None = None
    schema_file: UploadedFile | None = None
    schema_data: object | None = None  # a JSON value given inline instead of a file
    env: UploadedFile | None = None
    sample: UploadedFile | None = None
    extra: list[UploadedFile] = field(default_factory=list)


class UploadErrors(Exception):
    """All problems found in one upload, field -> messages (a 400 answer)."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors


def _read_text(upload: UploadedFile, field_name: str) -> str:
    if upload.size is not None and upload.size > settings.MAX_TEXT_FILE_BYTES:
        raise UploadError(
            field_name,
            f"'{upload.name}' is {upload.size} bytes; text files are limited to "
            f"{settings.MAX_TEXT_FILE_BYTES // 1024} KB.",
        )
    upload.seek(0)
    raw = upload.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadError(
            field_name, f"'{upload.name}' is not UTF-8 text. Save it as UTF-8 and upload it again."
        ) from None


@dataclass
class _Checked:
    group: Group
    input_type: str
    schema: object | None
    requirements: list[str]
    env_values: dict[str, str]
    files: dict[str, tuple[str, UploadedFile]]  # field -> (clean name, upload)
    extra: list[tuple[str, UploadedFile]]


def _check_upload(user, upload: ModelUpload) -> _Checked:
    """Validate everything before anything is written; collect every error."""
    errors: dict[str, list[str]] = {}

    def attempt(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UploadError as exc:
            errors.setdefault(exc.field, []).append(exc.message)
            return None

    name = (upload.name or "").strip()
    if not name:
        errors.setdefault("name", []).append("Give the model a name.")
    elif len(name) > 64:
        errors.setdefault("name", []).append(f"The name has {len(name)} characters; the limit is 64.")

    group = groups_for(user).filter(name=upload.group).first()
    if group is None:
        errors.setdefault("group", []).append(
            f"You are not a member of a group named '{upload.group}'. Use one of your groups."
        )

    operation = upload.operation
    if operation not in MLModel.Operation.values:
        errors.setdefault("operation", []).append("operation must be 'Sync' or 'Async'.")
    input_type = upload.input_type or ("json" if operation == "Sync" else "csv")
    if operation == "Sync" and input_type != "json":
        errors.setdefault("input_type", []).append("Sync models take JSON: input_type must be 'json'.")
    elif input_type not in MLModel.InputType.values:
        errors.setdefault("input_type", []).append("input_type must be one of json, csv, parquet.")

    try:
        interpreter_list = interpreters.discover_interpreters(settings.PYTHON_SEARCH_PATHS)
        interpreters.find_interpreter(upload.python_version, interpreter_list)
    except interpreters.InterpreterNotFound as exc:
        errors.setdefault("python_version", []).append(str(exc))

    files: dict[str, tuple[str, UploadedFile]] = {}
    for field_name in ("source", "model", "requirements", "schema", "env", "sample"):
        file = upload.schema_file if field_name == "schema" else getattr(upload, field_name)
        if file is None:
            continue
        clean = attempt(validation.sanitize_filename, file.name, field=field_name)
        if clean is not None:
            files[field_name] = (clean, file)
    extra: list[tuple[str, UploadedFile]] = []
    for file in upload.extra:
        clean = attempt(validation.sanitize_filename, file.name, field="extra")
        if clean is not None:
            extra.append((clean, file))

    source = files.get("source")
    if source is not None:
        if not source[0].endswith(".py"):
            errors.setdefault("source", []).append(
                f"'{source[0]}' is not a .py file. Upload the scoring script."
            )
        else:
            text = attempt(_read_text, source[1], "source")
            if text is not None:
                attempt(validation.check_source, text, upload.model_reference, filename=source[0])

    requirements: list[str] = []
    if "requirements" in files:
        text = attempt(_read_text, files["requirements"][1], "requirements")
        if text is not None:
            requirements = (
                attempt(validation.parse_requirements, text, allow_options=settings.ALLOW_REQUIREMENT_OPTIONS)
                or []
            )

    schema = None
    if "schema" in files:
        text = attempt(_read_text, files["schema"][1], "schema")
        if text is not None:
            schema = attempt(validation.parse_schema, text, require_object=operation == "Sync")
    elif upload.schema_data is not None:
        schema = upload.schema_data
        if operation == "Sync" and not isinstance(schema, dict):
            errors.setdefault("schema", []).append(
                "The schema of a Sync model must be a JSON object: one example input."
            )
    elif operation == "Sync":
        errors.setdefault("schema", []).append(
            "Sync models need a schema: a JSON file with one example input, used for the smoke test and the docs."
        )

    env_values: dict[str, str] = {}
    if "env" in files:
        text = attempt(_read_text, files["env"][1], "env")
        if text is not None:
            env_values = attempt(validation.parse_dotenv, text) or {}

    if "sample" in files and operation == "Sync":
        errors.setdefault("sample", []).append("A sample input file is only used by Async models.")

    for field_name, message in _missing(upload).items():
        errors.setdefault(field_name, []).append(message)

    named = {field_name: [clean] for field_name, (clean, _) in files.items() if field_name != "env"}
    if extra:
        named["extra"] = [clean for clean, _ in extra]
    attempt(validation.check_unique_names, named)

    if errors:
        raise UploadErrors(errors)
    assert group is not None
    return _Checked(group, input_type, schema, requirements, env_values, files, extra)


def _missing(upload: ModelUpload) -> dict[str, str]:
    missing = {}
    for field_name, what in (
        ("source", "the scoring script (.py)"),
        ("model", "the model file (e.g. model.pkl)"),
        ("requirements", "requirements.txt"),
    ):
        if getattr(upload, field_name) is None:
            missing[field_name] = f"Upload {what}."
    if not (upload.model_reference or "").strip():
        missing["model_reference"] = "Give the name of the entrypoint function, e.g. 'score'."
    return missing


def _write_files(checked: _Checked, destination: Path) -> dict[str, str]:
    """Write the uploads (never the .env) into a fresh folder; returns field -> name."""
    destination.mkdir(parents=True, mode=0o700)
    written = {}
    items = [(f, name, up) for f, (name, up) in checked.files.items() if f != "env"]
    items += [("extra", name, up) for name, up in checked.extra]
    for field_name, name, upload in items:
        upload.seek(0)
        with open(destination / name, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        written.setdefault(field_name, name)
    if checked.schema is not None and "schema" not in checked.files:
        (destination / "schema.json").write_text(json.dumps(checked.schema, indent=2))
        written["schema"] = "schema.json"
    return written


def create_model(user, upload: ModelUpload) -> MLModel:
    """Validate an upload, store its files and row, and queue its build.

    Nothing is stored when any check fails: files go to a private staging folder
    that is renamed into place only after the row is committed.
    """
    checked = _check_upload(user, upload)
    staging = settings.MODELS_DIR / f".incoming-{uuid.uuid4().hex}"
    try:
        written = _write_files(checked, staging)
        with transaction.atomic():
            model = MLModel.objects.create(
                name=upload.name.strip(),
                group=checked.group,
                operation=upload.operation,
                model_reference=upload.model_reference.strip(),
                python_version=upload.python_version.strip(),
                input_type=checked.input_type,
                schema=checked.schema,
                source_file=written["source"],
                model_file=written["model"],
                requirements_file=written["requirements"],
                schema_file=written.get("schema", ""),
                sample_file=written.get("sample", ""),
                extra_files=[name for name, _ in checked.extra],
                requirements=checked.requirements,
                env_names=sorted(checked.env_values),
                env_ciphertext=crypto.encrypt_json(checked.env_values) if checked.env_values else None,
                created_by=user,
            )
            staging.rename(model.folder)
            record(model, user, "created", f"{model.operation} model, python {model.python_version}")
            queue_build(model, user)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return model


def record(model: MLModel, actor, action: str, detail: str = "") -> ModelEvent:
    return ModelEvent.objects.create(model=model, actor=actor, action=action, detail=detail)


def queue_build(model: MLModel, actor, *, recovered: bool = False) -> ModelBuild:
    last = model.builds.order_by("-number").values_list("number", flat=True).first() or 0
    build = ModelBuild.objects.create(model=model, number=last + 1, requested_by=actor, recovered=recovered)
    # Enqueue only once the row is committed, or a fast worker could miss it.
    transaction.on_commit(
        lambda: async_task(
            "models_app.tasks.build_model", build.pk, task_name=f"build-{model.hash}-{build.number}"
        )
    )
    return build


class ActionRefused(Exception):
    """The model's state does not allow this action (a 409 answer)."""


# From which states each lifecycle action is allowed (the UI offers only these).
ALLOWED_FROM = {
    "disable": (MLModel.Status.READY, MLModel.Status.DEPLOYED, MLModel.Status.FAILED),
    "restart": (MLModel.Status.DEPLOYED, MLModel.Status.FAILED, MLModel.Status.DISABLED),
    "delete": tuple(s for s in MLModel.Status if s != MLModel.Status.DELETED),
}


def disable(model: MLModel, actor) -> MLModel:
    with transaction.atomic():
        updated = MLModel.objects.filter(pk=model.pk, status__in=ALLOWED_FROM["disable"]).update(
            status=MLModel.Status.DISABLED, status_message="Disabled: not serving.", updated_at=timezone.now()
        )
        model.refresh_from_db()
        if not updated:
            raise ActionRefused(f"A {model.status} model cannot be disabled.")
        model.builds.filter(status=ModelBuild.Status.QUEUED).update(status=ModelBuild.Status.CANCELLED)
        record(model, actor, "disabled")
    return model


def restart(model: MLModel, actor) -> MLModel:
    """Rebuild (the environment is reused when unchanged) and redeploy."""
    with transaction.atomic():
        updated = MLModel.objects.filter(pk=model.pk, status__in=ALLOWED_FROM["restart"]).update(
            status=MLModel.Status.READY, status_message="Rebuild queued.", updated_at=timezone.now()
        )
        model.refresh_from_db()
        if not updated:
            raise ActionRefused(
                f"A {model.status} model cannot be restarted; wait for the current build to end."
            )
        record(model, actor, "restarted")
        queue_build(model, actor)
    return model


def delete(model: MLModel, actor) -> MLModel:
    """Mark deleted and remove its files and secrets; the row (and its hash) stays."""
    with transaction.atomic():
        updated = (
            MLModel.objects.filter(pk=model.pk)
            .exclude(status=MLModel.Status.DELETED)
            .update(
                status=MLModel.Status.DELETED,
                status_message="Deleted.",
                env_ciphertext=None,
                updated_at=timezone.now(),
            )
        )
        model.refresh_from_db()
        if not updated:
            raise ActionRefused("This model is already deleted.")
        model.builds.filter(status=ModelBuild.Status.QUEUED).update(status=ModelBuild.Status.CANCELLED)
        record(model, actor, "deleted")
    shutil.rmtree(model.folder, ignore_errors=True)
    return model


def change_settings(model: MLModel, actor, **changes) -> MLModel:
    """Serving settings; the model host applies them on its next pass (no rebuild)."""
    changed = {k: v for k, v in changes.items() if getattr(model, k) != v}
    if changed:
        for key, value in changed.items():
            setattr(model, key, value)
        model.save(update_fields=[*changed, "updated_at"])
        record(model, actor, "settings_changed", ", ".join(f"{k}={v}" for k, v in changed.items()))
    return model


def decrypted_env(model: MLModel) -> dict[str, str]:
    """The model's `.env` values, for a runner's environment only. Never log or return them."""
    if not model.env_ciphertext:
        return {}
    values = crypto.decrypt_json(model.env_ciphertext)
    assert isinstance(values, dict)
    return values
