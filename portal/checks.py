"""System checks for settings that are wrong only in combination."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register()
def check_task_queue(app_configs, **kwargs):
    errors = []
    q = settings.Q_CLUSTER
    if q["timeout"] >= q["retry"]:
        errors.append(
            Error(
                f"django-q2 'timeout' ({q['timeout']} s) must be below 'retry' ({q['retry']} s), or a "
                "running task is handed to a second worker.",
                hint="Lower NEOMARIL_TASK_TIMEOUT or raise NEOMARIL_TASK_RETRY.",
                id="neomaril.E001",
            )
        )
    if q["timeout"] <= settings.ENV_BUILD_TIMEOUT + settings.SMOKE_TEST_TIMEOUT:
        errors.append(
            Error(
                "An environment build plus its smoke test "
                f"({settings.ENV_BUILD_TIMEOUT} + {settings.SMOKE_TEST_TIMEOUT} s) must fit in the task "
                f"timeout ({q['timeout']} s).",
                hint="Lower NEOMARIL_ENV_BUILD_TIMEOUT / NEOMARIL_SMOKE_TEST_TIMEOUT or raise NEOMARIL_TASK_TIMEOUT.",
                id="neomaril.E002",
            )
        )
    if settings.RUNNER_LOG_MAX_MB * 4 > settings.SANDBOX_TMP_MB:
        # The host caps the log once a second: what a model prints meanwhile must still fit.
        errors.append(
            Error(
                f"The runner log cap ({settings.RUNNER_LOG_MAX_MB} MB) must be at most a quarter of a "
                f"runner's file-size limit ({settings.SANDBOX_TMP_MB} MB): a log that reaches the limit "
                "fails every print() of the model.",
                hint="Lower NEOMARIL_RUNNER_LOG_MAX_MB or raise NEOMARIL_SANDBOX_TMP_MB.",
                id="neomaril.E006",
            )
        )
    if settings.MAX_UPLOAD_FILE_BYTES > settings.MAX_UPLOAD_TOTAL_BYTES:
        errors.append(
            Error(
                "The per-file upload limit is larger than the per-upload limit.",
                hint="Make NEOMARIL_MAX_UPLOAD_FILE_MB at most NEOMARIL_MAX_UPLOAD_TOTAL_MB.",
                id="neomaril.E003",
            )
        )
    return errors


@register(Tags.security, deploy=True)
def check_secrets_from_environment(app_configs, **kwargs):
    warnings = []
    if settings.SECRET_KEY_FROM_FILE:
        warnings.append(
            Warning(
                "SECRET_KEY is read from a file generated in the data folder.",
                hint="Set SECRET_KEY in the environment in production, to the file's value (secret_key in "
                "the data folder): a new value logs everyone out and voids every docs share link.",
                id="neomaril.W001",
            )
        )
    if settings.ENCRYPTION_KEY_FROM_FILE:
        warnings.append(
            Warning(
                "NEOMARIL_ENCRYPTION_KEY is read from a file generated in the data folder, next to the "
                "secrets it protects.",
                hint="Set NEOMARIL_ENCRYPTION_KEY in the environment in production, to the file's value "
                "(encryption.key in the data folder; keep a copy safe): the stored secrets open only "
                "with it. To change it, rotate (docs/models.md).",
                id="neomaril.W002",
            )
        )
    return warnings


@register(Tags.security, deploy=True)
def check_sandbox(app_configs, **kwargs):
    """Uploaded code must run sandboxed wherever more than one person can upload it."""
    if settings.UNSAFE_NO_SANDBOX:
        return [
            Error(
                "NEOMARIL_UNSAFE_NO_SANDBOX is set: uploaded model code runs without its sandbox and "
                "can read the database, the keys and every other group's models and secrets.",
                hint="Install bubblewrap and unset NEOMARIL_UNSAFE_NO_SANDBOX (docs/security.md).",
                id="neomaril.E004",
            )
        ]
    if settings.SANDBOX_NETWORK == "host":
        return [
            Warning(
                "NEOMARIL_SANDBOX_NETWORK=host: models allowed the network share the node's, and can "
                "listen on its free ports (the web port while it restarts), see its sockets and reach "
                "its loopback services.",
                hint="Install slirp4netns and unset NEOMARIL_SANDBOX_NETWORK (docs/security.md).",
                id="neomaril.W003",
            )
        ]
    return []


@register(Tags.database)
def check_encryption_key_opens_the_secrets(app_configs, databases=None, **kwargs):
    """The newest stored secret of each kind opens with the configured keys (run by
    migrate, so `make run` stops here rather than failing each build and call later)."""
    if not databases:
        return []
    from django.db import DatabaseError

    from groups import crypto

    for model_class, field in crypto.secret_columns():
        try:
            newest = (
                model_class._default_manager.exclude(**{field: None})
                .order_by("-pk")
                .values_list(field, flat=True)
                .first()
            )
        except DatabaseError:  # not migrated yet: nothing stored
            return []
        if newest is None:
            continue
        try:
            crypto.decrypt_json(newest)
        except crypto.DecryptionError:
            return [
                Error(
                    f"The encryption key does not open the stored secrets ({model_class._meta.verbose_name_plural}, "
                    f"{field}): NEOMARIL_ENCRYPTION_KEY changed, or the data folder's encryption.key was lost or replaced.",
                    hint=crypto.KEY_HINT,
                    id="neomaril.E005",
                )
            ]
    return []
