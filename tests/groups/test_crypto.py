"""Secrets at rest: MultiFernet encryption and key rotation."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from groups import crypto
from models_app.models import MLModel
from tests.helpers.clients import api_client
from tests.helpers.training import custom_payload, make_experiment
from tests.helpers.uploads import file, sync_payload
from training.models import TrainingRun


def test_round_trip_and_ciphertext_has_no_clear_text(settings):
    settings.NEOMARIL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    token = crypto.encrypt_json({"API_KEY": "plain-secret"})
    assert b"plain-secret" not in token
    assert crypto.decrypt_json(token) == {"API_KEY": "plain-secret"}


def test_wrong_key_is_a_clear_error(settings):
    settings.NEOMARIL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    token = crypto.encrypt_json({"a": "b"})
    settings.NEOMARIL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.DecryptionError, match="no configured encryption key"):
        crypto.decrypt_json(token)


def test_rotation_command_reencrypts_with_the_new_key(cast, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.NEOMARIL_ENCRYPTION_KEYS = [old]
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(env=file(".env", "API_KEY=rotate-me\n")), format="multipart"
    )
    model = MLModel.objects.get(hash=response.json()["hash"])
    experiment = make_experiment(cast.group, cast.owner)
    api_client(cast.owner).post(
        f"/api/v1/training/experiments/{experiment.hash}/runs",
        custom_payload(env=file(".env", "TOKEN=train-secret\n")),
        format="multipart",
    )
    run = TrainingRun.objects.get(experiment=experiment)
    settings.NEOMARIL_ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "1 models" in out.getvalue() and "1 training runs" in out.getvalue()
    settings.NEOMARIL_ENCRYPTION_KEYS = [new]  # the old key can now be dropped
    model.refresh_from_db()
    run.refresh_from_db()
    assert crypto.decrypt_json(model.env_ciphertext) == {"API_KEY": "rotate-me"}
    assert crypto.decrypt_json(run.env_ciphertext) == {"TOKEN": "train-secret"}


def test_bad_key_configuration_is_reported(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.NEOMARIL_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="Fernet keys"):
        crypto.encrypt_json({})


def _model_with_a_secret(cast, key: str) -> MLModel:
    from django.conf import settings as live

    live.NEOMARIL_ENCRYPTION_KEYS = [key]
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(env=file(".env", "API_KEY=s3cr3t\n")), format="multipart"
    )
    return MLModel.objects.get(hash=response.json()["hash"])


def test_a_rotation_that_meets_a_secret_no_key_opens_names_it_and_changes_nothing(cast, settings):
    from django.core.management.base import CommandError

    lost = Fernet.generate_key().decode()
    model = _model_with_a_secret(cast, lost)
    before = bytes(model.env_ciphertext)
    settings.NEOMARIL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(
        CommandError, match=rf"model {model.pk} \(env_ciphertext\): Cannot rotate .* Nothing was"
    ):
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    model.refresh_from_db()
    assert bytes(model.env_ciphertext) == before


def test_the_system_check_says_when_the_key_does_not_open_the_secrets(cast, settings):
    from portal.checks import check_encryption_key_opens_the_secrets

    key = Fernet.generate_key().decode()
    _model_with_a_secret(cast, key)
    assert check_encryption_key_opens_the_secrets(None, databases=["default"]) == []
    settings.NEOMARIL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    (error,) = check_encryption_key_opens_the_secrets(None, databases=["default"])
    assert error.id == "neomaril.E005" and "encryption.key was lost or replaced" in error.msg
    assert "rotate_encryption_keys" in error.hint


def test_a_job_that_cannot_open_its_secrets_fails_with_the_reason_not_a_traceback():
    from groups.jobs import JobFailed

    assert issubclass(crypto.DecryptionError, JobFailed)
