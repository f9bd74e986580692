"""Re-encrypt every stored secret with the primary (first) NEOMARIL_ENCRYPTION_KEY."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from groups import crypto
from models_app.models import MLModel


class Command(BaseCommand):
    help = (
        "Re-encrypt model secrets with the first key of NEOMARIL_ENCRYPTION_KEY. Rotate by putting a new key "
        "first, running this, then removing the old key."
    )

    def handle(self, *args, **options):
        rotated = 0
        with transaction.atomic():
            for model in (
                MLModel.objects.select_for_update().exclude(env_ciphertext=None).only("pk", "env_ciphertext")
            ):
                model.env_ciphertext = crypto.rotate(model.env_ciphertext)
                model.save(update_fields=["env_ciphertext"])
                rotated += 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the secrets of {rotated} model(s)."))
