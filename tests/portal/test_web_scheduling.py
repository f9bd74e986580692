"""The web workers yield to the runners (portal.procs.yield_to_runners, gunicorn's
post_fork): SCHED_BATCH, so their wake-ups do not preempt a runner mid-prediction;
NEOMARIL_WEB_YIELD_TO_RUNNERS=0 keeps the default policy. The real gunicorn."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.portal.test_drain import _start, data_dir  # noqa: F401 (the module's fixture)

ROOT = Path(__file__).resolve().parents[2]


def _worker_policies(web) -> set[int]:
    workers = psutil.Process(web.pid).children()
    assert workers, "gunicorn has no worker"
    # Every thread: the event loop's and Django's thread pool's, started after the fork.
    return {os.sched_getscheduler(thread.id) for worker in workers for thread in worker.threads()}


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "policy"), [(None, os.SCHED_BATCH), ("0", os.SCHED_OTHER)])
def test_web_workers_run_as_batch_unless_told_not_to(data_dir, setting, policy):  # noqa: F811
    extra = {} if setting is None else {"NEOMARIL_WEB_YIELD_TO_RUNNERS": setting}
    web, _url = _start(data_dir, "0", **extra)
    try:
        assert _worker_policies(web) == {policy}
        assert os.sched_getscheduler(web.pid) == os.SCHED_OTHER  # the arbiter is not a worker
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(20)


def test_a_worker_that_may_not_change_its_policy_keeps_the_default_and_says_so(monkeypatch):
    import runpy
    from types import SimpleNamespace
    from unittest import mock

    from portal import procs

    def forbidden():
        raise PermissionError(1, "Operation not permitted")  # what a seccomp profile answers

    monkeypatch.setattr(procs, "yield_to_runners", forbidden)
    monkeypatch.delenv("NEOMARIL_WEB_YIELD_TO_RUNNERS", raising=False)
    conf = runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))
    server = SimpleNamespace(log=mock.Mock())
    conf["post_fork"](server, SimpleNamespace(pid=4242))  # does not raise: the worker starts
    (message, pid, error), _kwargs = server.log.warning.call_args
    assert "keeps the default scheduling" in message and pid == 4242
    assert "not permitted" in str(error)


def test_a_setting_that_is_not_a_boolean_stops_gunicorn_before_any_worker(monkeypatch):
    import runpy

    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("NEOMARIL_WEB_YIELD_TO_RUNNERS", "maybe")
    with pytest.raises(ImproperlyConfigured, match="NEOMARIL_WEB_YIELD_TO_RUNNERS='maybe' is not a boolean"):
        runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))
