"""The ORM broker with a cheap idle poll (groups.broker), used when there is no Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ

from groups.broker import QuickPollORM

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker(monkeypatch):
    monkeypatch.setattr(Conf, "ORM", "default")  # the PostgreSQL + Redis pass names no ORM broker
    monkeypatch.setattr(Conf, "POLL", 0.01)
    return QuickPollORM(list_key="neomaril-test")


@pytest.fixture
def orm_dequeues(monkeypatch):
    calls = []
    original = ORM.dequeue

    def counted(self):
        calls.append(self)
        return original(self)

    monkeypatch.setattr(ORM, "dequeue", counted)
    return calls


def test_an_empty_queue_costs_one_statement_not_the_orms_query(
    broker, orm_dequeues, django_assert_num_queries
):
    # Not due: another queue's task, and one locked by a worker that took it.
    OrmQ.objects.create(key="another-queue", payload="p", lock=timezone.now() - timedelta(seconds=1))
    OrmQ.objects.create(key="neomaril-test", payload="p", lock=timezone.now() + timedelta(minutes=5))
    with django_assert_num_queries(1):
        assert broker.dequeue() is None
    assert orm_dequeues == []


def test_a_due_task_is_taken_and_locked_by_the_orm_brokers_dequeue(broker, orm_dequeues):
    task_id = broker.enqueue("the payload")
    assert broker.dequeue() == [(task_id, "the payload")]
    assert len(orm_dequeues) == 1
    assert broker.dequeue() is None  # locked for the task's retry time now
    assert len(orm_dequeues) == 1


def test_the_cluster_uses_it_unless_redis_is_the_broker():
    assert isinstance(get_broker(), Redis if settings.REDIS_URL else QuickPollORM)
