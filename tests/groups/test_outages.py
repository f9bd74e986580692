"""groups.outages.RepeatedFailure: a loop that fails on every pass logs once per outage."""

from __future__ import annotations

import logging

from django.db import OperationalError

from groups import outages


def test_a_failure_that_lasts_is_one_traceback_a_reminder_a_minute_and_one_line_at_the_end(
    caplog, monkeypatch
):
    clock = [100.0]
    monkeypatch.setattr(outages.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.WARNING, logger="test.loop")
    failures = outages.RepeatedFailure(logging.getLogger("test.loop"), "scaling pass")
    error = OperationalError("connection refused")
    for _second in range(150):  # a pass a second for 150 s
        failures.failed(error, "it runs again at the next pass")
        clock[0] += 1
    failures.worked()
    failures.worked()  # working on: nothing more to say
    lines = [(record.levelname, record.getMessage(), bool(record.exc_info)) for record in caplog.records]
    assert lines == [
        ("ERROR", "scaling pass failed; it runs again at the next pass", True),
        ("WARNING", "scaling pass still fails after 60 s: OperationalError: connection refused", False),
        ("WARNING", "scaling pass still fails after 120 s: OperationalError: connection refused", False),
        ("WARNING", "scaling pass works again after 150 s", False),
    ]
