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


def tasks_held() -> int | None:
    """How many tasks wait to start: in Redis's queue and in the live clusters' own task
    queues (a cluster's pusher takes tasks ahead of its workers), or None when the broker
    can't say (the ORM broker, Redis unreachable).

    A job still waiting for its task while this is 0 lost the task: Redis hands a task out
    once, and the node that held it stopped or was lost before a worker of it began.
    """
    try:
        broker = get_broker()
        if not isinstance(broker, Redis):
            return None
        return broker.queue_size() + sum(stat.task_q_size for stat in Stat.get_all(broker))
    except Exception:  # a broker that does not answer: nothing is concluded from it
        logger.warning("could not read the task queues from the broker", exc_info=True)
        return None


class StaleJobs:
    """One recovery pass's view of the nodes, for every kind of job (executions, training
    runs, monitoring jobs): which stale jobs this node takes, and what it says of one.

    A job's leftover processes can only be stopped on the node that ran it (`stop_leftovers`,
    here). Another node's stale job is left to that node while a worker of it runs, and
    taken over once none does (its processes died with its workers). When the broker
    can't say (the ORM broker, Redis unreachable), another node's job is not re-run.
    """

    def __init__(self, this_host: str) -> None:
        self.host = this_host
        self.live = live_worker_hosts()

    def candidates(self, queryset):
        """The stale jobs this node may recover: not those of another node still working."""
        if self.live is None:
            return queryset
        return queryset.exclude(host__in=self.live - {self.host})

    def examine(self, job, *, stale_after: int, what: str, process: str, stop_leftovers) -> tuple[str, bool]:
        """What happened to `job` (for its log and error), and whether it may run again."""
        elsewhere = bool(job.host) and job.host != self.host
        stopped = 0 if elsewhere else stop_leftovers(job)
        reason = f"The worker running {what} stopped (no heartbeat for {stale_after} s)."
        if stopped:
            reason += f" Its {process} process was left running and has been stopped (pid {stopped})."
        if elsewhere and self.live is not None:
            reason += f" It ran on {job.host}, where no worker is running any more."
        elif elsewhere:
            reason += f" It ran on {job.host}, so it can't be checked from here and is not re-run."
        return reason, not elsewhere or self.live is not None
