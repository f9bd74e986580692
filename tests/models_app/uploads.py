"""Transitional: tests/models_app/test_sandbox_attacks.py (being written alongside) still
imports from here; everything else imports tests.helpers.uploads."""

from tests.helpers.uploads import file, sync_payload  # noqa: F401
