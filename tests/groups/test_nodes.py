"""groups.nodes: which hosts run a worker, from django-q2's cluster status in Redis."""

from __future__ import annotations

import time
import uuid

import pytest
from django_q.brokers import get_broker
from django_q.brokers.redis_broker import Redis
from django_q.signing import SignedPackage
from django_q.status import Stat, Status

from groups import nodes

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


def test_a_broker_that_does_not_answer_says_nothing(monkeypatch):
    def down():
        raise ConnectionError("no broker")

    monkeypatch.setattr(nodes, "get_broker", down)
    assert nodes.live_worker_hosts() is None
