"""Re-encrypt every stored secret with the primary (first) NEOMARIL_ENCRYPTION_KEY."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from groups import crypto


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets (models' and training runs' .env, webhook signing secrets) with the first key of "
        "NEOMARIL_ENCRYPTION_KEY. Rotate by putting a new key first, running this, then removing the old key."
    )

    def handle(self, *args, **options):
        counts = []
        with transaction.atomic():  # all or nothing: a secret no key opens changes none
            for model_class, field in crypto.secret_columns():
                rotated = self.rotate(model_class, field)
                counts.append(f"{rotated} {model_class._meta.verbose_name_plural} ({field})")
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the secrets of {', '.join(counts)}."))

    @staticmethod
    def rotate(model_class, field: str) -> int:
        rotated = 0
        rows = model_class._default_manager.select_for_update().exclude(**{field: None})
        for row in rows.only("pk", field):
            try:
                setattr(row, field, crypto.rotate(getattr(row, field)))
            except crypto.DecryptionError as exc:
                raise CommandError(
                    f"{model_class._meta.verbose_name} {row.pk} ({field}): {exc} Nothing was re-encrypted."
                ) from None
            row.save(update_fields=[field])
            rotated += 1
        return rotated
