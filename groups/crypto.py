"""Encryption of secrets at rest (model `.env` values) with MultiFernet.

`NEOMARIL_ENCRYPTION_KEY` holds one or more comma-separated Fernet keys: the first
encrypts, every key decrypts, so keys rotate by prepending a new one and running
`manage.py rotate_encryption_keys`, then dropping the old one.
"""

from __future__ import annotations

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from groups.jobs import JobFailed

# Every column named *_ciphertext holds a Fernet token made here: models' and training
# runs' `.env`, monitors' webhook secrets, and whatever comes next (see secret_columns).
SECRET_SUFFIX = "_ciphertext"  # noqa: S105  (a column name's ending)

KEY_HINT = (
    "Set NEOMARIL_ENCRYPTION_KEY (or the data folder's encryption.key) back to the key the "
    "secrets were encrypted with; to change keys, put the new one first, run "
    "manage.py rotate_encryption_keys, then drop the old one (docs/security.md)."
)


class DecryptionError(JobFailed):
    """The ciphertext was not made with any configured key (or was tampered with). A job
    that needs the secret fails with this message, not a traceback."""


def secret_columns() -> list[tuple[type, str]]:
    """(model class, field name) of every stored secret, found through the app registry
    so none is forgotten (by the key check and the rotation command)."""
    from django.apps import apps

    return [
        (model_class, field.name)
        for model_class in apps.get_models()
        for field in model_class._meta.get_fields()
        if field.name.endswith(SECRET_SUFFIX)
    ]


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "NEOMARIL_ENCRYPTION_KEY must be comma-separated Fernet keys "
            "(make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.NEOMARIL_ENCRYPTION_KEYS))


def encrypt_json(value: object) -> bytes:
    return fernet().encrypt(json.dumps(value).encode())


def decrypt_json(ciphertext: bytes) -> object:
    try:
        return json.loads(fernet().decrypt(bytes(ciphertext)))
    except InvalidToken as exc:
        raise DecryptionError(
            f"Cannot decrypt a stored secret: no configured encryption key matches it. {KEY_HINT}"
        ) from exc


def encrypt_env(values: dict[str, str]) -> bytes | None:
    """A `.env`'s values as stored (None when there are none)."""
    return encrypt_json(values) if values else None


def decrypt_env(ciphertext: bytes | None) -> dict[str, str]:
    """A stored `.env`'s values, for a sandboxed process only. Never log or return them."""
    if not ciphertext:
        return {}
    values = decrypt_json(ciphertext)
    assert isinstance(values, dict)
    return values


def rotate(ciphertext: bytes) -> bytes:
    """Re-encrypt with the primary key (MultiFernet.rotate keeps the timestamp)."""
    try:
        return fernet().rotate(bytes(ciphertext))
    except InvalidToken as exc:
        raise DecryptionError(
            f"Cannot rotate a stored secret: no configured encryption key matches it. {KEY_HINT}"
        ) from exc
