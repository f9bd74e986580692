"""django-q2's ORM broker (the queue in the database, when there is no Redis) with a
cheap idle poll.

The cluster's pusher asks the broker for due tasks every `poll` (NEOMARIL_QUEUE_POLL_MS,
100 ms). django-q2's `ORM.dequeue` builds and compiles a QuerySet on every ask (about
0.5 ms of CPU measured alone): an idle node's pusher used 16 ms of CPU a second. Here an
empty queue costs one plain statement (about 0.04 ms alone; the idle pusher, 5.5 ms a
second in all); the ORM's own dequeue (which locks the tasks it takes) runs only when a
task is due.
"""

from __future__ import annotations

from time import sleep

from django.db import DatabaseError, connections
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ


class QuickPollORM(ORM):
    def dequeue(self):
        if self.any_due():
            return super().dequeue()
        sleep(Conf.POLL)
        return None

    def any_due(self) -> bool:
        """Whether a task of this queue is due (the condition ORM.dequeue selects by)."""
        connection = connections[Conf.ORM]
        quote = connection.ops.quote_name
        sql = (
            f"SELECT 1 FROM {quote(OrmQ._meta.db_table)} "  # noqa: S608  (names quoted, values bound)
            f"WHERE {quote('key')} = %s AND {quote('lock')} < %s LIMIT 1"
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, [self.list_key, connection.ops.adapt_datetimefield_value(timezone.now())])
                return cursor.fetchone() is not None
        except DatabaseError:
            # A dropped connection: ORM.dequeue reconnects, or raises for the pusher to report.
            connection.close()
            return True
