"""Re-encrypt every stored secret with the primary (first) NEOMARIL_ENCRYPTION_KEY."""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from groups import crypto

# Every table with this column holds an encrypted `.env`: models, training runs, and
# whatever comes next, found through the app registry so none is forgotten.
SECRET_FIELD = "env_ciphertext"  # noqa: S105  (a column name)


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets (models' and training runs' .env) with the first key of "
        "NEOMARIL_ENCRYPTION_KEY. Rotate by putting a new key first, running this, then removing the old key."
    )

    def handle(self, *args, **options):
        counts = []
        with transaction.atomic():
            for model_class in apps.get_models():
                if SECRET_FIELD not in {field.name for field in model_class._meta.get_fields()}:
                    continue
                rotated = 0
                rows = model_class._default_manager.select_for_update().exclude(**{SECRET_FIELD: None})
                for row in rows.only("pk", SECRET_FIELD):
                    setattr(row, SECRET_FIELD, crypto.rotate(getattr(row, SECRET_FIELD)))
                    row.save(update_fields=[SECRET_FIELD])
                    rotated += 1
                counts.append(f"{rotated} {model_class._meta.verbose_name_plural}")
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the secrets of {', '.join(counts)}."))
