"""Where webhook notices may go, and how they are signed (groups.webhooks)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time

import pytest

from groups import webhooks
from tests.helpers.receiver import start_receiver

SECRET = "s" * 16


@pytest.fixture
def receiver():
    found, server = start_receiver()
    yield found
    server.shutdown()


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # a cloud's metadata service
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),  # noqa: S104  (an address under test, not a bind)
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # loopback written as IPv6
        ("64:ff9b::a00:5", False),  # NAT64 to 10.0.0.5
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 to the metadata service
        ("64:ff9b:1::7f00:1", False),  # local-use NAT64 to 127.0.0.1
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("2002:a00:5::1", False),  # 6to4 over 10.0.0.5
        ("64:ff9b::808:808", True),  # NAT64 to a public address
    ],
)
def test_only_public_addresses_are_allowed_by_default(address, allowed, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    assert webhooks.address_allowed(ipaddress.ip_address(address)) is allowed


def test_an_admin_allows_internal_networks(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert webhooks.address_allowed(ipaddress.ip_address("10.1.2.3"))
    assert not webhooks.address_allowed(ipaddress.ip_address("192.168.1.1"))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/admin",
        "http://localhost/hook",
        "http://api.localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/hook",
    ],
)
def test_a_url_naming_an_internal_address_is_refused_when_given(url, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    assert "is not a public address" in webhooks.url_problem(url)


def test_a_url_with_credentials_is_refused_and_names_are_not_looked_up_when_given(settings, monkeypatch):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    assert "user name or password" in webhooks.url_problem("https://me:pw@hooks.example/x")

    def no_lookup(*args, **kwargs):
        raise AssertionError("looked up")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    assert webhooks.url_problem("https://hooks.example/x") is None


def test_secrets_shorter_than_16_characters_are_refused():
    assert "at least 16 characters" in webhooks.secret_problem("short")
    assert webhooks.secret_problem(SECRET) is None
    assert "at most 256" in webhooks.secret_problem("x" * 257)


def test_a_loopback_receiver_is_refused_by_default_and_nothing_is_sent(receiver, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    with pytest.raises(webhooks.Refused, match="127.0.0.1, which is not a public address"):
        webhooks.post_json(receiver.url, b"{}", secret=None, timeout=5, user_agent="test")
    assert receiver.requests == []


def test_a_name_resolving_inside_is_refused_at_sending(receiver, settings, monkeypatch):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    port = receiver.url.split(":")[2].split("/")[0]
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):  # a public name whose DNS answers a loopback address
        return real("127.0.0.1" if host == "hooks.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(webhooks.Refused, match=r"hooks.example resolves to 127.0.0.1, not a public address"):
        webhooks.post_json(f"http://hooks.example:{port}/hook", b"{}", secret=None, timeout=5, user_agent="t")
    assert receiver.requests == []


def test_the_connection_goes_to_the_address_checked_under_the_name_given(receiver, settings, monkeypatch):
    """One lookup, checked and used: a second lookup could answer an address never checked."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    port = receiver.url.split(":")[2].split("/")[0]
    real = socket.getaddrinfo
    lookups = []

    def resolver(host, *args, **kwargs):
        lookups.append(host)
        return real("127.0.0.1" if host == "hooks.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    delivery = webhooks.post_json(
        f"http://hooks.example:{port}/hook?team=risk", b'{"a": 1}', secret=None, timeout=5, user_agent="t"
    )
    assert delivery.status == 204
    assert lookups.count("hooks.example") == 1
    (sent,) = receiver.requests
    assert sent.path == "/hook?team=risk" and sent.body == b'{"a": 1}'
    assert sent.headers["Host"] == f"hooks.example:{port}"
    assert "X-Neomaril-Signature" not in sent.headers


def test_a_signed_notice_verifies_with_the_secret(receiver, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    body = b'{"event": "monitoring.drift"}'
    webhooks.post_json(receiver.url, body, secret=SECRET, timeout=5, user_agent="t")
    (sent,) = receiver.requests
    timestamp = sent.headers["X-Neomaril-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    # What docs/monitoring.md tells a receiver to compute:
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + sent.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(sent.headers["X-Neomaril-Signature"], f"sha256={expected}")
    assert webhooks.signature("another secret!!", timestamp, body) != sent.headers["X-Neomaril-Signature"]


def test_redirects_are_not_followed(receiver, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    receiver.status, receiver.location = 302, "http://169.254.169.254/latest/meta-data/"
    assert webhooks.post_json(receiver.url, b"{}", secret=None, timeout=5, user_agent="t").status == 302
    assert len(receiver.requests) == 1
