"""groups.nodes: which hosts run a worker, from django-q2's cluster status in Redis."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest
from django_q.brokers import get_broker
from django_q.brokers.redis_broker import Redis
from django_q.signing import SignedPackage
from django_q.status import Stat, Status

from groups import nodes

# Taken before tests/conftest.py pins nodes.tasks_held for every test.
real_tasks_held = nodes.tasks_held

pytestmark = pytest.mark.django_db


def test_the_hosts_of_running_clusters_come_from_redis_and_expire():
    broker = get_broker()
    if not isinstance(broker, Redis):
        # The ORM broker keeps the status in each process's cache: it can't say (one node).
        assert nodes.live_worker_hosts() is None
        return
    status = Status(pid=1, cluster_id=uuid.uuid4())
    status.host = "node-x"
    broker.set_stat(Stat.get_key(status.cluster_id), SignedPackage.dumps(status, True), 2)
    assert "node-x" in nodes.live_worker_hosts()
    time.sleep(2.5)  # a cluster that stopped writing its status is gone with it
    assert "node-x" not in nodes.live_worker_hosts()


def test_the_tasks_held_are_redis_s_queue_and_each_live_cluster_s_own():
    broker = get_broker()
    if not isinstance(broker, Redis):
        assert real_tasks_held() is None  # the ORM broker re-delivers by itself
        return
    before = real_tasks_held()
    payload = SignedPackage.dumps({"id": uuid.uuid4().hex, "func": "math.floor", "args": (1,)})
    broker.enqueue(payload)
    try:
        assert real_tasks_held() == before + 1
        status = Status(pid=1, cluster_id=uuid.uuid4())
        status.host, status.task_q_size = "node-x", 2  # taken ahead of its workers
        broker.set_stat(Stat.get_key(status.cluster_id), SignedPackage.dumps(status, True), 2)
        assert real_tasks_held() == before + 3
        time.sleep(2.5)  # a cluster that stopped: what it held is no longer counted
        assert real_tasks_held() == before + 1
    finally:
        broker.connection.lrem(broker.list_key, 0, payload)
    assert real_tasks_held() == before


def test_a_broker_that_does_not_answer_says_nothing(monkeypatch):
    def down():
        raise ConnectionError("no broker")

    monkeypatch.setattr(nodes, "get_broker", down)
    assert nodes.live_worker_hosts() is None
    assert real_tasks_held() is None


# --- what a recovery pass does with another node's stale job ---------------------------


def _stale(monkeypatch, *live: str | None, host: str = "node-b"):
    """A StaleJobs of node-a, the broker saying `live` (None: it can't say), and a job of `host`."""
    monkeypatch.setattr(nodes, "live_worker_hosts", lambda: None if live == (None,) else set(live))
    leftovers = []

    def stop_leftovers(job) -> int:
        leftovers.append(job)
        return 4321

    job = SimpleNamespace(host=host)
    verdict = nodes.StaleJobs("node-a").examine(
        job, stale_after=90, what="this job", process="model", stop_leftovers=stop_leftovers
    )
    return verdict, leftovers


def test_a_stale_job_of_this_node_has_its_leftovers_stopped_and_runs_again(monkeypatch):
    (reason, again), leftovers = _stale(monkeypatch, "node-a", host="node-a")
    assert again and len(leftovers) == 1
    assert reason == (
        "The worker running this job stopped (no heartbeat for 90 s). "
        "Its model process was left running and has been stopped (pid 4321)."
    )


def test_a_stale_job_of_a_node_without_workers_runs_again_here(monkeypatch):
    (reason, again), leftovers = _stale(monkeypatch, "node-a")
    assert again and leftovers == []  # its processes died with that node's workers
    assert reason.endswith("It ran on node-b, where no worker is running any more.")


def test_a_stale_job_of_another_node_is_not_rerun_when_the_broker_cannot_say(monkeypatch):
    (reason, again), leftovers = _stale(monkeypatch, None)
    assert not again and leftovers == []
    assert reason.endswith("It ran on node-b, so it can't be checked from here and is not re-run.")


def test_the_stale_jobs_of_a_node_with_a_live_worker_are_left_to_it(monkeypatch):
    class Jobs:
        def exclude(self, **lookups):
            self.excluded = lookups
            return self

    monkeypatch.setattr(nodes, "live_worker_hosts", lambda: {"node-a", "node-b"})
    assert nodes.StaleJobs("node-a").candidates(Jobs()).excluded == {"host__in": {"node-b"}}
    monkeypatch.setattr(nodes, "live_worker_hosts", lambda: None)
    everything = Jobs()
    assert nodes.StaleJobs("node-a").candidates(everything) is everything
