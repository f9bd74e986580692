"""Re-encrypt every stored secret with the primary (first) NEOMARIL_ENCRYPTION_KEY."""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from groups import crypto

# Every column named *_ciphertext holds a Fernet token (groups.crypto): models' and
# training runs' `.env`, monitors' webhook secrets, and whatever comes next, found
# through the app registry so none is forgotten.
SECRET_SUFFIX = "_ciphertext"  # noqa: S105  (a column name's ending)


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets (models' and training runs' .env, webhook signing secrets) with the first key of "
        "NEOMARIL_ENCRYPTION_KEY. Rotate by putting a new key first, running this, then removing the old key."
    )

    def handle(self, *args, **options):
        counts = []
        with transaction.atomic():
            for model_class in apps.get_models():
                for field in model_class._meta.get_fields():
                    if field.name.endswith(SECRET_SUFFIX):
                        rotated = self.rotate(model_class, field.name)
                        counts.append(f"{rotated} {model_class._meta.verbose_name_plural} ({field.name})")
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the secrets of {', '.join(counts)}."))

    @staticmethod
    def rotate(model_class, field: str) -> int:
        rotated = 0
        rows = model_class._default_manager.select_for_update().exclude(**{field: None})
        for row in rows.only("pk", field):
            setattr(row, field, crypto.rotate(getattr(row, field)))
            row.save(update_fields=[field])
            rotated += 1
        return rotated
