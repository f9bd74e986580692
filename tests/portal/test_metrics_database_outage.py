"""`GET /metrics` while the database can't be reached (portal.metrics.DatabaseReads).

The series read from the database are left out, everything else is served, and
`neomaril_database_up` says which scrape could read it; the node logs one warning per
outage, not a traceback per scrape.
"""

from __future__ import annotations

import logging

import pytest

from portal import metrics
from tests.portal.test_database_outage import database_down
from tests.portal.test_metrics import scrape, value

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def a_fresh_process():
    metrics.DatabaseReads.failing = False  # as a process that has not met the outage yet


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


def test_the_scrape_is_served_without_the_databases_series(monkeypatch, caplog):
    # The model host is up and names a runner: its labels would come from the database.
    status = {"runners": [{"model": "Mabc", "alive": True, "memory_bytes": 10}], "evictions": {"Mabc": 1}}
    monkeypatch.setattr(metrics, "host_call", lambda request, timeout: {"ok": True, **status})
    healthy = scrape()
    assert value(healthy, "neomaril_database_up") == 1
    assert value(healthy, "neomaril_models", status="Deployed") == 0

    with caplog.at_level(logging.WARNING, logger="portal.metrics"), database_down():
        down = scrape()
        assert value(scrape(), "neomaril_database_up") == 0  # a second scrape: no second warning
    assert value(down, "neomaril_database_up") == 0
    assert not {"neomaril_models", "neomaril_jobs"} & names(down)
    assert not [
        name for name in names(down) if name.startswith(("neomaril_model_runner", "neomaril_model_calls_q"))
    ]
    # What needs no database is all there: the host's answer, the disk, the processes' counters.
    assert value(down, "neomaril_model_host_up") == 1
    assert value(down, "neomaril_data_disk_free_bytes") > 0
    assert value(down, "neomaril_recording_dropped_total") is not None
    assert names(healthy) - names(down) <= {
        "neomaril_models",
        "neomaril_jobs",
        "neomaril_model_runners",
        "neomaril_model_runner_memory_bytes",
        "neomaril_model_calls_queued",
        "neomaril_model_runner_evictions_total",
    }

    with caplog.at_level(logging.WARNING, logger="portal.metrics"):
        back = scrape()
    assert value(back, "neomaril_database_up") == 1
    assert value(back, "neomaril_models", status="Deployed") == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "portal.metrics"]
    assert messages[0] == (
        "/metrics reading the database failed; its series are left out, and neomaril_database_up "
        "is 0, until it can"
    )
    assert len(messages) == 2 and messages[1].startswith("/metrics reading the database works again after")


def test_the_runner_series_are_left_out_when_only_their_labels_query_fails(monkeypatch):
    """RunnersCollector reads the database for its labels alone: StatesCollector is then not
    asked again in the same scrape (it would wait for a connection again)."""
    status = {"runners": [{"model": "Mabc", "alive": True, "memory_bytes": 10}]}
    monkeypatch.setattr(metrics, "host_call", lambda request, timeout: {"ok": True, **status})
    asked = []

    def count():
        asked.append("states")
        return {}, {}

    monkeypatch.setattr(metrics.StatesCollector, "_count", staticmethod(count))
    with database_down():
        samples = scrape()
    assert value(samples, "neomaril_database_up") == 0
    assert value(samples, "neomaril_model_host_up") == 1
    assert asked == []
