"""Model workflows: upload (store a checked upload), build queueing and lifecycle actions.

Views call these; they never touch files or statuses themselves.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Max
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext
from django_q.tasks import async_task

from groups import crypto, storage
from groups.models import Group
from groups.uploads import folder_bytes
from models_app.models import MLModel, ModelBuild, ModelEvent
from models_app.serving import aio
from monitoring.tasks import purge_records_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamedFile:
    """An uploaded file and the sanitised name it is stored under."""

    name: str
    file: UploadedFile


# The file an example given as text is stored in.
INLINE_SCHEMA_NAME = "schema.json"


@dataclass
class ModelUpload:
    """One checked model upload: everything `create_model` stores.

    `forms.ModelUploadForm` makes it, for the upload page and `POST /api/v1/models`
    alike: every check has passed by then, so this holds parsed values (the group row,
    the requirement lines, the example, the `.env` values), not raw request fields.
    """

    name: str
    group: Group
    operation: str
    model_reference: str
    python_version: str
    input_type: str
    allow_network: bool
    source_file: NamedFile
    model_file: NamedFile
    requirements_file: NamedFile
    requirements: list[str]
    schema: object | None = None  # the example input, parsed
    schema_file: NamedFile | None = None  # None when the example came as text
    env_values: dict[str, str] = field(default_factory=dict)
    # Whether a .env came with the upload: a version without one keeps the live version's.
    env_given: bool = False
    sample_file: NamedFile | None = None
    extra_files: list[NamedFile] = field(default_factory=list)
    # The training run this model is promoted from (training.services.promote).
    training_run: Any = None

    @property
    def stored_files(self) -> list[NamedFile]:
        """The files written into the model's folder (never the `.env`)."""
        single = [
            self.source_file,
            self.model_file,
            self.requirements_file,
            self.schema_file,
            self.sample_file,
        ]
        return [f for f in single if f is not None] + self.extra_files

    @property
    def schema_name(self) -> str:
        if self.schema_file is not None:
            return self.schema_file.name
        return INLINE_SCHEMA_NAME if self.schema is not None else ""


def _write_files(upload: ModelUpload, destination: Path) -> None:
    """Write the uploads (never the .env) into a fresh folder."""
    destination.mkdir(parents=True, mode=0o700)
    for named in upload.stored_files:
        named.file.seek(0)
        with open(destination / named.name, "wb") as out:
            for chunk in named.file.chunks():
                out.write(chunk)
    if upload.schema is not None and upload.schema_file is None:
        (destination / INLINE_SCHEMA_NAME).write_text(json.dumps(upload.schema, indent=2))


def create_model(user, upload: ModelUpload) -> MLModel:
    """Store a checked upload's files and row as a new model, and queue its build."""
    return _store(user, upload, of_model=None)


def add_version(user, model: MLModel, upload: ModelUpload) -> MLModel:
    """Store a checked upload as `model`'s next version and queue its build.

    The version goes live (the model's run URL serves it) when its build deploys it;
    until then, and if it fails, the live version keeps serving. ActionRefused when the
    model was deleted meanwhile.
    """
    return _store(user, upload, of_model=model.root)


def _store(user, upload: ModelUpload, *, of_model: MLModel | None) -> MLModel:
    """Store an upload's files and row (a new model, or a version of `of_model`) and
    queue its build.

    Nothing is left behind when storing fails: files go to a private staging folder
    that is renamed into place inside the row's transaction, and removed (staged or
    placed) when the transaction does not commit.
    """
    staging = settings.MODELS_DIR / f".incoming-{uuid.uuid4().hex}"
    placed: Path | None = None  # the model's folder, once staging is renamed to it
    try:
        _write_files(upload, staging)
        with transaction.atomic():
            version_fields = {}
            env_names = sorted(upload.env_values)
            env_ciphertext = crypto.encrypt_env(upload.env_values)
            if of_model is not None:
                # The model's row is the version counter's lock (as for executions), and
                # what the version takes from it is read under it, not from the copy read
                # before the body streamed in: a model deleted since takes no new version
                # (its build would make it live and serve it again), and serving settings
                # or a live version changed during the upload are the ones it gets.
                of_model = lock_line(of_model)
                if of_model.status == MLModel.Status.DELETED:
                    raise ActionRefused(gettext("This model is deleted: upload a new model instead."))
                if not upload.env_given:
                    live = of_model.serving
                    env_names, env_ciphertext = live.env_names, live.env_ciphertext
                last = of_model.all_versions().aggregate(last=Max("version"))["last"] or 1
                version_fields = {
                    "line": of_model,
                    "version": last + 1,
                    # Serving settings are the model's, whichever version answers.
                    **{name: getattr(of_model, name) for name in MODEL_WIDE_SETTINGS},
                }
            storage.take(upload.group, folder_bytes(staging))
            model = MLModel.objects.create(
                **version_fields,
                name=upload.name,
                group=upload.group,
                operation=upload.operation,
                model_reference=upload.model_reference,
                python_version=upload.python_version,
                input_type=upload.input_type,
                allow_network=upload.allow_network,
                schema=upload.schema,
                source_file=upload.source_file.name,
                model_file=upload.model_file.name,
                requirements_file=upload.requirements_file.name,
                schema_file=upload.schema_name,
                sample_file=upload.sample_file.name if upload.sample_file else "",
                extra_files=[named.name for named in upload.extra_files],
                requirements=upload.requirements,
                env_names=env_names,
                env_ciphertext=env_ciphertext,
                training_run=upload.training_run,
                created_by=user,
            )
            staging.rename(model.folder)
            placed = model.folder
            network = "" if upload.allow_network else ", no network"
            origin = (
                f", promoted from training run {upload.training_run.number}" if upload.training_run else ""
            )
            described = f"{model.operation} model, python {model.python_version}{network}{origin}"
            if of_model is not None:
                record(of_model, user, "version_added", f"version {model.version}: {described}")
            record(model, user, "created", described)
            queue_build(model, user)
    except BaseException:
        # The row is rolled back: its folder goes too, wherever the failure came.
        shutil.rmtree(placed or staging, ignore_errors=True)
        raise
    return model


def lock_line(model: MLModel) -> MLModel:
    """Lock the row of `model`'s model (version 1's) and return it as it is now.

    Every transaction that changes a model or its versions takes this lock first, before
    any version's row: an upload, a deletion, a version going live, a build's outcome. On
    PostgreSQL two of them then wait for each other instead of one acting on what it read
    before the other committed (a version uploaded while the model was deleted, and
    served), and none locks in the opposite order (a deadlock, answered as an outage).
    """
    # OF self: PostgreSQL refuses to lock the nullable side of an outer join (live_version).
    return (
        MLModel.objects.select_for_update(of=("self",))
        .select_related("live_version")
        .get(pk=model.line_id or model.pk)
    )


def record(model: MLModel, actor, action: str, detail: str = "") -> ModelEvent:
    return ModelEvent.objects.create(model=model, actor=actor, action=action, detail=detail)


def queue_build(model: MLModel, actor, *, recovered: bool = False) -> ModelBuild:
    last = model.builds.order_by("-number").values_list("number", flat=True).first() or 0
    build = ModelBuild.objects.create(model=model, number=last + 1, requested_by=actor, recovered=recovered)
    build.model = model
    # Enqueued only once the row is committed, or a fast worker could miss it.
    build.queue(send_build)
    return build


def send_build(build: ModelBuild) -> None:
    async_task("models_app.tasks.build_model", build.pk, task_name=f"build-{build.model.hash}-{build.number}")


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
        lock_line(model)  # a version whose build ends now sees the model disabled, or goes live first
        updated = MLModel.objects.filter(pk=model.pk, status__in=ALLOWED_FROM["disable"]).update(
            status=MLModel.Status.DISABLED, status_message="Disabled: not serving.", updated_at=timezone.now()
        )
        model.refresh_from_db()
        if not updated:
            raise ActionRefused(gettext("A %(status)s model cannot be disabled.") % {"status": model.status})
        model.builds.filter(status=ModelBuild.Status.QUEUED).update(status=ModelBuild.Status.CANCELLED)
        record(model, actor, "disabled")
    return model


def restart(model: MLModel, actor) -> MLModel:
    """Rebuild (the environment is reused when unchanged) and redeploy."""
    with transaction.atomic():
        lock_line(model)
        updated = MLModel.objects.filter(pk=model.pk, status__in=ALLOWED_FROM["restart"]).update(
            status=MLModel.Status.READY, status_message="Rebuild queued.", updated_at=timezone.now()
        )
        model.refresh_from_db()
        if not updated:
            if model.status == MLModel.Status.DELETED:
                raise ActionRefused(gettext("A Deleted model cannot be restarted: upload it again."))
            raise ActionRefused(
                gettext("A %(status)s model cannot be restarted; wait for the current build to end.")
                % {"status": model.status}
            )
        record(model, actor, "restarted")
        queue_build(model, actor)
    return model


# Sent (inside the deletion's transaction) before a later version alone is deleted, with
# `version`: a receiver returns why it may not be, or None. Apps above this one (Async
# executions) keep their own rules without this module importing them.
deleting_version = Signal()


def delete(model: MLModel, actor) -> MLModel:
    """Mark deleted and remove its files, secrets and recorded calls; the row (and its
    hash) stays. A model goes with all its versions; a later version alone only when it
    is not the live one."""
    with transaction.atomic():
        root = lock_line(model)
        if model.line_id is not None:
            if root.live_version_id == model.pk:
                raise ActionRefused(
                    gettext("Version %(number)s is live: make another version live before deleting it.")
                    % {"number": model.version}
                )
            for _receiver, refusal in deleting_version.send(sender=MLModel, version=model):
                if refusal:
                    raise ActionRefused(refusal)
            rows = MLModel.objects.filter(pk=model.pk)
        else:
            rows = model.all_versions()
        doomed = list(rows.exclude(status=MLModel.Status.DELETED))
        updated = rows.filter(pk__in=[row.pk for row in doomed]).update(
            status=MLModel.Status.DELETED,
            status_message="Deleted.",
            env_ciphertext=None,
            updated_at=timezone.now(),
        )
        model.refresh_from_db()
        if not updated or model not in doomed:
            if model.line_id is not None:  # a version alone: its model may well be alive
                raise ActionRefused(
                    gettext("Version %(number)s is already deleted.") % {"number": model.version}
                )
            raise ActionRefused(gettext("This model is already deleted."))
        ModelBuild.objects.filter(model__in=doomed, status=ModelBuild.Status.QUEUED).update(
            status=ModelBuild.Status.CANCELLED
        )
        record(model, actor, "deleted", f"version {model.version}" if model.line_id else "")
    # After the commit: the recorded inputs are the user's production data. In batches, so
    # a busy model's calls do not hold SQLite's write lock for seconds; what is left past
    # the batches of one pass, and calls still buffered in a web process, are swept up by
    # the housekeeping purge.
    if model.line_id is None:
        purge_records_of(MLModel.objects.filter(pk=model.pk))
    storage.remove_folders(model.group_id, [row.folder for row in doomed])
    return model


# Settings of the model as a whole: every version has the same, whichever answers.
MODEL_WIDE_SETTINGS = ("min_replicas", "max_replicas", "request_timeout", "execution_timeout")


def min_replicas_refusal(model: MLModel, low: int) -> str | None:
    """Why `model` cannot keep `low` replicas warm on each node, or None when it can.

    A node runs at most HOST_MAX_RUNNERS runners, and a group's models may keep at most
    GROUP_WARM_REPLICAS warm beyond one each: the runners a minimum keeps are started by
    evicting other models' idle ones, whatever group those belong to. Only a raise is
    refused, so a group over a share lowered since can still lower its minimums.
    """
    if low > settings.HOST_MAX_RUNNERS:
        return gettext(
            "%(low)s replicas is more than a node runs at once (NEOMARIL_HOST_MAX_RUNNERS = %(budget)s)."
        ) % {"low": low, "budget": settings.HOST_MAX_RUNNERS}
    root = model.root
    if low <= root.min_replicas:
        return None
    others = list(
        MLModel.objects.filter(
            group_id=root.group_id, line__isnull=True, operation=MLModel.Operation.SYNC, min_replicas__gt=1
        )
        .exclude(status=MLModel.Status.DELETED)
        .exclude(pk=root.pk)
        .order_by("-min_replicas", "name")
        .values_list("name", "min_replicas")
    )
    kept = sum(replicas - 1 for _, replicas in others)
    if kept + low - 1 <= settings.GROUP_WARM_REPLICAS:
        return None
    values = {
        "group": root.group.name,
        "share": settings.GROUP_WARM_REPLICAS,
        "low": low,
        "total": kept + low - 1,
        "kept": kept,
        "named": ", ".join(f"{name} ({replicas})" for name, replicas in others[:3]),
    }
    if not kept:
        return (
            gettext(
                "Group %(group)s may keep %(share)s replicas warm on each node beyond one per model "
                "(NEOMARIL_GROUP_WARM_REPLICAS); %(low)s here would make it %(total)s."
            )
            % values
        )
    return (
        gettext(
            "Group %(group)s may keep %(share)s replicas warm on each node beyond one per model "
            "(NEOMARIL_GROUP_WARM_REPLICAS); %(low)s here would make it %(total)s, as its other "
            "models keep %(kept)s: %(named)s."
        )
        % values
    )


def change_settings(model: MLModel, actor, **changes) -> MLModel:
    """Serving settings, for every version of the model; the model host applies them on
    its next pass (no rebuild)."""
    with transaction.atomic():
        # The request validated min <= max against what it read; a concurrent change of
        # the other bound may have landed since, so the pair is checked again under the lock.
        current = MLModel.objects.select_for_update().get(pk=model.root.pk)
        low = changes.get("min_replicas", current.min_replicas)
        high = changes.get("max_replicas", current.max_replicas)
        if low > current.min_replicas:
            # The group's share is checked again under its lock: two raises on two of its
            # models at once would each have passed alone.
            Group.objects.select_for_update().get(pk=current.group_id)
            refusal = min_replicas_refusal(current, low)
            if refusal:
                raise ActionRefused(refusal)
        if high is not None and high < low:
            raise ActionRefused(
                gettext(
                    "max_replicas (%(high)s) must be at least min_replicas (%(low)s), as changed meanwhile."
                )
                % {"high": high, "low": low}
            )
        for key in MODEL_WIDE_SETTINGS:
            setattr(model, key, getattr(current, key))
        changed = {k: v for k, v in changes.items() if getattr(model, k) != v}
        if changed:
            for key, value in changed.items():
                setattr(model, key, value)
            model.all_versions().update(**changed, updated_at=timezone.now())
            record(model, actor, "settings_changed", ", ".join(f"{k}={v}" for k, v in changed.items()))
    return model


def decrypted_env(model: MLModel) -> dict[str, str]:
    """The model's `.env` values, for a runner's environment only. Never log or return them."""
    return crypto.decrypt_env(model.env_ciphertext)


def make_live(model: MLModel, version: MLModel, actor) -> MLModel:
    """Serve `version` at the model's run URL from the next call on: a rollback, or a
    roll forward. Only a Deployed version can go live."""
    root = model.root
    with transaction.atomic():
        lock_line(root)
        version = MLModel.objects.select_for_update().get(pk=version.pk)
        if version.root.pk != root.pk:
            raise ActionRefused(
                gettext("Version %(version)s is not a version of model %(model)s.")
                % {"version": version.hash, "model": root.hash}
            )
        if version.status != MLModel.Status.DEPLOYED:
            raise ActionRefused(
                gettext("Version %(number)s is %(status)s: only a Deployed version can go live.")
                % {"number": version.version, "status": version.status}
            )
        now = timezone.now()
        MLModel.objects.filter(pk=root.pk).update(
            live_version=None if version.pk == root.pk else version, updated_at=now, live_chosen_at=now
        )
        record(root, actor, "version_live", f"version {version.version} serves the model's run URL")
    root.refresh_from_db()
    return root


def go_live_if_newest(version: MLModel) -> bool:
    """After `version`'s first successful build: serve it if it is the newest version
    that ever deployed, nobody chose the live version by hand since it was made, and the
    model is not disabled.

    So a version that finished after a newer one deployed does not go live, nor does one
    whose first build succeeds (a restart after a failure, a slow build) after a
    rollback: the person's choice stands. A rebuild of a version that was deployed
    before never changes the live version. Called inside the transaction that marks it
    Deployed.
    """
    if version.line_id is None:
        return False  # version 1: live unless another version is
    root = lock_line(version)
    if version.pk == root.live_version_id or root.live_number > version.version:
        return False
    if root.serving.status in (MLModel.Status.DISABLED, MLModel.Status.DELETED):
        # Disabled means off until a person restarts a version or makes one live: a
        # version whose build ends meanwhile does not turn the run URL back on.
        return False
    if root.live_chosen_at is not None and root.live_chosen_at >= version.created_at:
        return False
    newer_deployed = root.later_versions.filter(version__gt=version.version, deployed_at__isnull=False)
    if newer_deployed.exclude(status=MLModel.Status.DELETED).exists():
        return False
    MLModel.objects.filter(pk=root.pk).update(live_version=version, updated_at=timezone.now())
    record(root, None, "version_live", f"version {version.version} deployed and serves the model's run URL")
    return True


def warm_quietly(version: MLModel) -> bool:
    """Start a Deployed Sync version's runners on this node and wait for them, so that
    it is warm before it goes live. Best effort: without a model host here (or when it
    cannot start them) the runners start on the version's first call."""
    if not version.is_sync or version.status != MLModel.Status.DEPLOYED:
        return False
    try:
        answer = aio.host_call(
            {"op": "ensure", "model": version.hash}, timeout=settings.COLD_START_TIMEOUT + 5
        )
    except aio.ServingError as exc:
        logger.info("version %s not warmed: %s", version.hash, exc.message)
        return False
    return bool(answer.get("ok"))


def delete_version(version: MLModel, actor) -> MLModel:
    """Delete one version of a model; version 1 holds the model (delete the model instead)."""
    if version.line_id is None:
        raise ActionRefused(gettext("Version 1 holds the model: delete the model to remove it."))
    return delete(version, actor)
