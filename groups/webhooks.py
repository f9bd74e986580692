"""Notices the platform POSTs to addresses its users give (the drift webhook).

The request leaves from a worker, inside the platform's network: left open, a group
member could aim it at the database's host, another node's metrics, or a cloud's
metadata service (169.254.169.254) and read the outcome in the period's status. So a
notice goes only to public addresses, plus the networks an admin lists in
NEOMARIL_WEBHOOK_ALLOWED_NETWORKS:

- when the URL is given, an address written in it (or `localhost`) is checked at once;
- when a notice is sent, the name is resolved, every address it resolves to is checked,
  and the connection goes to the address that was checked (a second lookup could answer
  differently); redirects are not followed.

With a signing secret, each notice carries `X-Neomaril-Timestamp` and
`X-Neomaril-Signature: sha256=<HMAC-SHA256(secret, "<timestamp>.<body>")>`, so the
receiver knows the notice is ours and recent (docs/monitoring.md shows the check).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext

SIGNATURE_HEADER = "X-Neomaril-Signature"
TIMESTAMP_HEADER = "X-Neomaril-Timestamp"
SECRET_MIN_LENGTH = 16
SECRET_MAX_LENGTH = 256
ALLOWED_SETTING = "NEOMARIL_WEBHOOK_ALLOWED_NETWORKS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The notice may not go to this address; the message says why (in English: it is logged)."""


# IPv6 prefixes whose last 32 bits are an IPv4 address a gateway reaches (RFC 6052 NAT64,
# RFC 8215 local NAT64, the deprecated IPv4-compatible ::a.b.c.d): checked as that address.
_IPV4_CARRIERS = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96"))


def _as_reached(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for, where it embeds one; else itself."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        return address.ipv4_mapped
    if address.sixtofour is not None:  # 2002:7f00:1::/48 is 6to4 over 127.0.0.1
        return address.sixtofour
    if any(address in carrier for carrier in _IPV4_CARRIERS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def address_allowed(address: IPAddress) -> bool:
    """A public unicast address, or one in the admin's allowed networks."""
    address = _as_reached(address)
    if any(address in ipaddress.ip_network(network) for network in settings.WEBHOOK_ALLOWED_NETWORKS):
        return True
    return address.is_global and not address.is_multicast


def _literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names without a lookup: an IP literal, or localhost."""
    if host == "localhost" or host.endswith(".localhost"):
        return ipaddress.ip_address("127.0.0.1")  # RFC 6761: always loopback
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def url_problem(url: str) -> str | None:
    """Why a webhook URL is refused when it is given (translated), or None.

    Names are not looked up here: DNS may be down or answer differently later, and
    every notice is checked when it is sent anyway.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        # Form URL fields accept ftp:// too, which no notice can be sent to.
        return gettext(
            "The webhook URL must start with https:// (or http://): notices are HTTP POST requests."
        )
    if parts.username is not None or parts.password is not None:
        return gettext(
            "The webhook URL must not carry a user name or password: give a signing secret "
            "instead, and check the signature on the receiving side."
        )
    address = _literal_address((parts.hostname or "").lower())
    if address is not None and not address_allowed(address):
        return gettext(
            "The webhook URL points at %(address)s, which is not a public address. Notices go "
            "only to public addresses and to the networks an administrator allows in %(setting)s."
        ) % {"address": address, "setting": ALLOWED_SETTING}
    return None


def secret_problem(secret: str) -> str | None:
    """Why a signing secret is refused (translated), or None."""
    if len(secret) < SECRET_MIN_LENGTH:
        return gettext(
            "The signing secret must have at least %(minimum)d characters (make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')."
        ) % {"minimum": SECRET_MIN_LENGTH}
    if len(secret) > SECRET_MAX_LENGTH:
        return gettext("The signing secret must have at most %(maximum)d characters.") % {
            "maximum": SECRET_MAX_LENGTH
        }
    return None


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Neomaril-Signature value of a notice."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def resolve_checked(host: str, port: int) -> str:
    """The address to connect to: every address `host` resolves to must be allowed (a
    name that also points inside the network is refused whole)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in found]
    for address in addresses:
        if not address_allowed(address):
            raise Refused(f"{host} resolves to {address}, not a public address (see {ALLOWED_SETTING})")
    return str(addresses[0])


@dataclass(frozen=True)
class Delivery:
    status: int  # the HTTP status of the answer


def post_json(url: str, body: bytes, *, secret: str | None, timeout: float, user_agent: str) -> Delivery:
    """POST `body` to `url` once, to a checked address, signed when there is a secret.

    Raises Refused (the address is not allowed), or OSError / http.client.HTTPException
    when the receiver cannot be reached or answers garbage.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"not an http(s) URL: {url}")
    with translation.override("en"):  # for the period's log, whatever the worker's language
        problem = url_problem(url)
    if problem is not None:
        raise Refused(problem)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = resolve_checked(parts.hostname, port)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    # The host name stays the connection's own (Host header, TLS SNI and certificate
    # check); only the socket goes to the address that was checked.
    connection = connection_class(parts.hostname, port, timeout=timeout)
    connection._create_connection = lambda _address, timeout, source: socket.create_connection(  # noqa: SLF001
        (address, port), timeout, source
    )
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    if secret:
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read(64 * 1024)  # a receiver's page is not kept; reading lets it finish cleanly
        return Delivery(status=answer.status)
    finally:
        connection.close()
