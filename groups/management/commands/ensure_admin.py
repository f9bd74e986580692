"""Create the first admin from NEOMARIL_ADMIN_USER / NEOMARIL_ADMIN_PASSWORD (idempotent).

This short-lived command is the only process of `make run` that sees the password: the
Makefile removes both variables from the environment of every other step and of
supervisord, so no long-running process (or anything it starts) holds it.
"""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction


class Command(BaseCommand):
    help = "Create an admin user from NEOMARIL_ADMIN_USER / NEOMARIL_ADMIN_PASSWORD if it does not exist."

    def handle(self, *args, **options):
        username = os.environ.get("NEOMARIL_ADMIN_USER", "").strip()
        password = os.environ.get("NEOMARIL_ADMIN_PASSWORD", "")
        if not username:
            self.stdout.write("NEOMARIL_ADMIN_USER not set: no admin created.")
            return
        if not password:
            raise CommandError("NEOMARIL_ADMIN_USER is set but NEOMARIL_ADMIN_PASSWORD is empty.")
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is not None:
            # Idempotent: never reset an existing admin's password from the environment.
            self.stdout.write(f"Admin '{username}' already exists.")
            return
        try:
            with transaction.atomic():
                User.objects.create_superuser(username=username, password=password, email="")
        except IntegrityError:
            # Another node's `make run` created it between our look-up and our insert.
            self.stdout.write(f"Admin '{username}' already exists.")
            return
        self.stdout.write(self.style.SUCCESS(f"Admin '{username}' created."))
