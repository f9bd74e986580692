"""Which nodes have a worker running: for the recovery of jobs that ran on another node.

A job records the host name of the node whose worker ran it (`Job.host`). Its leftover
processes can only be found and stopped on that node, so a stale job of another node is
left to that node while a worker of it is running, and taken over once none is: its
processes died with its workers (a sandbox dies with the worker that started it).
"""

from __future__ import annotations

import logging

from django_q.brokers import get_broker
from django_q.brokers.redis_broker import Redis
from django_q.status import Stat

logger = logging.getLogger(__name__)


def live_worker_hosts() -> set[str] | None:
    """The hosts with a django-q2 cluster running now (this one's included), or None when
    the broker can't say.

    Each cluster writes its status to Redis about every second with a 3 s expiry
    (django-q2's Stat), so a node that stopped or was lost is gone from it within
    seconds. The ORM broker keeps that status in each process's own cache: it can't say
    (it is the one-node layout anyway).
    """
    try:
        broker = get_broker()
        if not isinstance(broker, Redis):
            return None
        return {stat.host for stat in Stat.get_all(broker)}
    except Exception:  # a broker that does not answer: nothing is concluded from it
        logger.warning("could not read the workers' status from the broker", exc_info=True)
        return None
