"""`manage.py migrate`, one node at a time: Django's command under a database-wide lock.

Every node's `make run` migrates before it starts. Two nodes starting together would
apply the same migration twice on PostgreSQL (the second fails: the table exists); under
`pg_advisory_lock` the second waits, then finds nothing left to apply. SQLite is one
node's file: nothing to take there. Production runs migrations once per release anyway
(docs/deployment.md); the lock makes a concurrent start harmless, not a way to deploy.
"""

from __future__ import annotations

from django.core.management.commands import migrate
from django.db import connections

# pg_advisory_lock's key: any bigint no other code of ours uses ("neomaril" in ASCII).
LOCK_KEY = 0x6E656F6D6172696C


class Command(migrate.Command):
    def handle(self, *args, **options):
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            return super().handle(*args, **options)
        with connection.cursor() as cursor:
            # Session-level: held across the migrations' own transactions until unlocked.
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            return super().handle(*args, **options)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
