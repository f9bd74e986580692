"""Training workflows: experiments, runs (store a checked upload, queue it) and promotion.

Views and the SDK's endpoints call these; they never touch files or statuses themselves.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import Max
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext
from django_q.tasks import async_task
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from groups import crypto, storage
from groups.models import Group
from groups.uploads import folder_bytes
from models_app import environments
from models_app import services as model_services
from models_app.models import MLModel
from models_app.services import ModelUpload, NamedFile
from models_app.validation import UploadError, parse_requirements
from training.models import MODEL_ARTIFACT, Experiment, TrainingRun

logger = logging.getLogger(__name__)

# What the harness needs in every training environment: the data comes as a DataFrame,
# tables are kept as parquet, the fitted object is saved with cloudpickle. Added unpinned
# when requirements.txt does not name them, so the user's own pins always win.
PLATFORM_REQUIREMENTS = ("pandas", "pyarrow", "cloudpickle")
# Run numbers are shown to users and put in URLs; larger ids can't exist.
MAX_RUN_NUMBER = 2**31 - 1


def get_or_create_experiment(
    user, *, name: str, model_type: str, group: Group, force: bool = False
) -> tuple[Experiment, bool]:
    """The group's experiment with this name and type, or a new one (always new with ``force``)."""
    with transaction.atomic():
        # One find-or-create at a time per group: two requests at once both found none and
        # both created one (SQLite's write transactions are serial already).
        Group.objects.select_for_update().get(pk=group.pk)
        if not force:
            existing = Experiment.objects.filter(group=group, name=name, model_type=model_type).first()
            if existing is not None:
                return existing, False
        experiment = Experiment.objects.create(
            name=name, model_type=model_type, group=group, created_by=user if user.is_authenticated else None
        )
        return experiment, True


def with_platform_requirements(
    lines: list[str], needed: tuple[str, ...] = PLATFORM_REQUIREMENTS
) -> list[str]:
    """``lines`` plus what a harness needs (the training harness's by default) and they do not name already."""
    named = set()
    for line in lines:
        requirement = _requirement(line)
        if requirement is not None:  # None: an option line (--index-url ...) names nothing
            named.add(canonicalize_name(requirement.name))
    return [*lines, *(name for name in needed if name not in named)]


@dataclass
class TrainingUpload:
    """One checked training run request: everything `create_run` stores.

    `forms.TrainingRunForm` makes it, for the page and the API alike; every check has
    passed by then. Custom runs carry the data, source and training function; External
    runs the artifacts of a model trained elsewhere (`inputs`, by role) and its metrics.
    """

    experiment: Experiment
    name: str
    training_type: str
    python_version: str
    requirements_file: NamedFile
    requirements: list[str]
    description: str = ""
    allow_network: bool = True
    training_reference: str = ""
    train_file: NamedFile | None = None
    source_file: NamedFile | None = None
    env_values: dict[str, str] = field(default_factory=dict)
    extra_files: list[NamedFile] = field(default_factory=list)
    inputs: dict[str, NamedFile] = field(default_factory=dict)
    metrics: dict[str, float | None] | None = None
    logged_params: dict | None = None

    @property
    def stored_files(self) -> list[NamedFile]:
        single = [self.train_file, self.source_file, self.requirements_file]
        return [f for f in single if f is not None] + list(self.inputs.values()) + self.extra_files


def create_run(user, upload: TrainingUpload) -> TrainingRun:
    """Store a checked run's files and row, and queue it after commit.

    Nothing is left behind when storing fails: files go to a private staging folder that
    is renamed into place only after the row exists.
    """
    experiment = upload.experiment
    staging = settings.TRAININGS_DIR / f".incoming-{uuid.uuid4().hex}"
    try:
        work = staging / "sandbox" / "work"
        work.mkdir(parents=True, mode=0o700)
        for named in upload.stored_files:
            named.file.seek(0)
            with open(work / named.name, "wb") as out:
                for chunk in named.file.chunks():
                    out.write(chunk)
        with transaction.atomic():
            # The experiment row is the per-experiment counter's lock on PostgreSQL;
            # the unique constraint on (experiment, number) is the last line of defence.
            Experiment.objects.select_for_update().filter(pk=experiment.pk).values_list("pk").first()
            storage.take(experiment.group, folder_bytes(staging))
            last = experiment.runs.aggregate(last=Max("number"))["last"] or 0
            run = TrainingRun.objects.create(
                experiment=experiment,
                number=last + 1,
                name=upload.name,
                description=upload.description,
                training_type=upload.training_type,
                requested_by=user if user is not None and user.is_authenticated else None,
                python_version=upload.python_version,
                training_reference=upload.training_reference,
                train_file=upload.train_file.name if upload.train_file else "",
                source_file=upload.source_file.name if upload.source_file else "",
                requirements_file=upload.requirements_file.name,
                extra_files=[named.name for named in upload.extra_files],
                inputs={role: named.name for role, named in upload.inputs.items()},
                requirements=with_platform_requirements(upload.requirements),
                env_names=sorted(upload.env_values),
                env_ciphertext=crypto.encrypt_env(upload.env_values),
                allow_network=upload.allow_network,
                metrics=upload.metrics,
                params={"logged": upload.logged_params} if upload.logged_params is not None else None,
            )
            run.experiment = experiment
            if run.folder.exists():
                # Left by a database restored from an older backup: no row owns it.
                shutil.rmtree(run.folder)
            run.folder.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(run.folder)
            queue_run(run)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return run


def queue_run(run: TrainingRun) -> None:
    """Hand the run to a worker once the transaction that made it Requested commits."""
    run.queue(send_run)


def send_run(run: TrainingRun) -> None:
    async_task(
        "training.tasks.run_training", run.pk, task_name=f"training-{run.experiment.hash}-{run.number}"
    )


def decrypted_env(run: TrainingRun) -> dict[str, str]:
    """The run's `.env` values, for its sandbox only. Never log or return them."""
    return crypto.decrypt_env(run.env_ciphertext)


def get_run(experiment: Experiment, number: int) -> TrainingRun | None:
    if not 0 < number <= MAX_RUN_NUMBER:
        return None
    return experiment.runs.filter(number=number).first()


# --------------------------------------------------------------------------- promote


class NotPromotable(Exception):
    """The run can't become a model (yet); the message says why, for a 409."""


def check_promotable(run: TrainingRun) -> None:
    if run.files_removed_at is not None:
        raise NotPromotable(files_removed_message(run, gettext("it can't be promoted")))
    if run.status != TrainingRun.Status.SUCCEEDED:
        state = run.status
        detail = f": {run.error_message.splitlines()[0]}" if run.error_message else ""
        raise NotPromotable(
            gettext(
                "Run %(number)s of experiment '%(experiment)s' is %(state)s%(detail)s; "
                "only a Succeeded run can be promoted."
            )
            % {"number": run.number, "experiment": run.experiment.name, "state": state, "detail": detail}
        )
    if not (run.artifacts_folder / MODEL_ARTIFACT).is_file():
        raise NotPromotable(
            gettext("Run %(number)s no longer has its model file; it can't be promoted.")
            % {"number": run.number}
        )


# Receivers answer why the run's files must stay (a sentence), or None: monitoring whose
# reference is the run's data (monitors.services).
removing_run_files = Signal()


class RunFilesKept(Exception):
    """Why a run's files can't be deleted now, already phrased for the user."""


def files_removed_message(run: TrainingRun, consequence: str) -> str:
    who = run.files_removed_by.username if run.files_removed_by else gettext("someone no longer here")
    return gettext("The files of run %(number)s were deleted on %(date)s by %(who)s: %(consequence)s.") % {
        "number": run.number,
        "date": f"{run.files_removed_at:%Y-%m-%d %H:%M} UTC",
        "who": who,
        "consequence": consequence,
    }


def remove_run_files(run: TrainingRun, actor) -> int:
    """Delete a finished run's files (its uploads and artifacts) to free its group's
    storage; returns the bytes freed.

    The row stays, with its metrics, params and log, and the models promoted from it keep
    their own copies; the run can no longer be promoted, downloaded or be a reference.
    """
    with transaction.atomic():
        row = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if row.files_removed_at is not None:
            raise RunFilesKept(files_removed_message(row, gettext("there is nothing left to delete")))
        if not row.is_finished:
            raise RunFilesKept(
                gettext("Run %(number)s is %(status)s: its files can be deleted once it has finished.")
                % {"number": row.number, "status": row.status}
            )
        for _receiver, refusal in removing_run_files.send(sender=TrainingRun, run=row):
            if refusal:
                raise RunFilesKept(refusal)
        row.files_removed_at = timezone.now()
        row.files_removed_by = actor if actor is not None and actor.is_authenticated else None
        row.save(update_fields=["files_removed_at", "files_removed_by"])
    # After the commit: a rollback must not leave a row whose files are gone unmarked.
    return storage.remove_folders(run.experiment.group_id, [run.folder])


def run_model_file(run: TrainingRun) -> NamedFile:
    """The run's `model.pkl`, as the model file of an upload."""
    handle = open(run.artifacts_folder / MODEL_ARTIFACT, "rb")  # noqa: SIM115  (promote closes it)
    return NamedFile(MODEL_ARTIFACT, File(handle, name=MODEL_ARTIFACT))


def promoted_requirements(run: TrainingRun, extra_text: str = "") -> tuple[list[str], str]:
    """The requirement lines and requirements.txt text of a model promoted from ``run``.

    The run's environment, as frozen, plus any extra lines the scoring code needs. The
    frozen set is made an alias of the run's environment, so the model's build reuses
    it; extra lines make a different set, which the build installs (from uv's cache).
    """
    frozen = [line for line in run.frozen_requirements.splitlines() if line.strip()]
    try:
        lines = parse_requirements("\n".join(frozen), allow_options=settings.ALLOW_REQUIREMENT_OPTIONS)
    except UploadError:
        # A freeze naming something our rules refuse (a local path): the set it was built from.
        lines = list(run.requirements)
    text = "\n".join(lines) + "\n"
    if extra_text.strip():
        text += "# added when promoting\n" + extra_text.strip() + "\n"
    return lines, text


def frozen_pin_conflicts(frozen_lines: list[str], extra_lines: list[str]) -> list[dict[str, str]]:
    """The extra requirement lines no install can satisfy beside the run's frozen pins: a
    package the run froze at ``==version`` asked for at a version its specifier excludes.
    Only sure conflicts: lines with environment markers or URLs are left to the build."""
    pinned: dict[str, tuple[str, str]] = {}  # name: (the frozen line, its version)
    for line in frozen_lines:
        requirement = _requirement(line)
        specifiers = list(requirement.specifier) if requirement is not None else []
        if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
            continue
        try:
            Version(specifiers[0].version)
        except InvalidVersion:
            continue
        pinned[canonicalize_name(requirement.name)] = (str(requirement), specifiers[0].version)
    conflicts = []
    for line in extra_lines:
        requirement = _requirement(line)
        if requirement is None or requirement.marker is not None or requirement.url:
            continue
        name = canonicalize_name(requirement.name)
        if name not in pinned:
            continue
        pin, version = pinned[name]
        if not requirement.specifier.contains(version, prereleases=True):
            conflicts.append({"requirement": str(requirement), "pin": pin, "name": name, "version": version})
    return conflicts


def _requirement(line: str) -> Requirement | None:
    """The requirement a parsed requirements.txt line names; None for an option line."""
    try:
        return Requirement(line.split(" --hash")[0])
    except InvalidRequirement:
        return None


def prepare_environment_alias(run: TrainingRun, lines: list[str]) -> None:
    """Make the run's environment serve ``lines`` (its freeze) without a build."""
    env_path = environments.environment_path(settings.ENVS_DIR, run.env_fingerprint)
    if not environments.is_complete(env_path):
        return  # removed meanwhile: the model's build will simply install it again
    try:
        environments.alias_environment(settings.ENVS_DIR, run.python_full_version, lines, env_path)
    except OSError:
        logger.warning("could not alias the environment of %s", run, exc_info=True)


def promote(user, run: TrainingRun, upload: ModelUpload, *, version_of: MLModel | None = None) -> MLModel:
    """Create the model of a Succeeded run from a checked upload (`forms.PromoteForm`),
    or with `version_of` that model's next version."""
    check_promotable(run)
    upload.model_file = run_model_file(run)
    try:
        frozen_lines, _text = promoted_requirements(run)
        prepare_environment_alias(run, frozen_lines)  # extra lines make another set: built
        upload.training_run = run
        if version_of is not None:
            return model_services.add_version(user, version_of, upload)
        return model_services.create_model(user, upload)
    finally:
        upload.model_file.file.close()


def frozen_requirements_file(text: str) -> NamedFile:
    return NamedFile("requirements.txt", SimpleUploadedFile("requirements.txt", text.encode()))
