"""deploy/haproxy.cfg agrees with what the nodes allow (no HAProxy needed: the file is read).

tests/deploy/test_nodes.py runs the file under a real HAProxy; this checks the numbers
that a short test cannot reach, such as a Sync call as long as a model may ask for.
"""

from __future__ import annotations

import re

from models_app.serializers import ModelSettingsSerializer
from tests.helpers.processes import ROOT

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _timeout(name: str) -> float:
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    match = re.search(rf"^\s*timeout {name} (\d+)(ms|s|m|h|d)?\s*$", text, re.MULTILINE)
    assert match, f"no `timeout {name}` in deploy/haproxy.cfg"
    return int(match[1]) * UNITS[match[2] or "ms"]


def test_the_balancer_waits_for_the_slowest_sync_call_a_model_may_ask_for(settings):
    longest_request = ModelSettingsSerializer().fields["request_timeout"].max_value
    # The call waits for a cold start first (docs/serving.md), then for the model.
    assert _timeout("server") >= longest_request + settings.COLD_START_TIMEOUT
