"""An idle keep-alive connection stays open across a client's pause (portal/gunicorn.conf.py
`keepalive`): at gunicorn's default of 2 s a request sent after a 2 s pause could find the
connection closed before any answer. The real gunicorn on a loopback port."""

from __future__ import annotations

import http.client
import signal
import time

import pytest

from tests.portal.test_drain import _start, data_dir  # noqa: F401 (the module's fixture)

pytestmark = pytest.mark.slow


def test_an_idle_connection_is_kept_across_a_pause(data_dir):  # noqa: F811
    web, url = _start(data_dir, "0")
    try:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        time.sleep(3)  # past gunicorn's default keep-alive of 2 s
        connection.request("GET", "/healthz")  # on the same connection: not RemoteDisconnected
        assert connection.getresponse().status in (200, 503)
        connection.close()
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(20)
