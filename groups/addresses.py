"""Client addresses as the platform compares them (no Django: gunicorn's settings use it too).

A process bound to "::" sees IPv4 peers as IPv4-mapped IPv6 addresses (::ffff:a.b.c.d):
they are compared as the IPv4 addresses they are, or a balancer at 10.0.0.2 declared
as a trusted proxy would not be recognised behind such a bind.
"""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(value: str) -> Address | None:
    """`value` as an address, an IPv4-mapped one as its IPv4 address; None if it is none."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def with_ipv4_mapped(entries: str) -> str:
    """A comma-separated list of addresses and networks, each IPv4 one followed by its
    IPv4-mapped form, for matchers that compare the peer's address as it arrives (uvicorn's)."""
    kept = []
    for entry in (item.strip() for item in entries.split(",")):
        if not entry:
            continue
        kept.append(entry)
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if network.version == 4:
            mapped = f"::ffff:{network.network_address}"
            kept.append(mapped if "/" not in entry else f"{mapped}/{96 + network.prefixlen}")
    return ",".join(kept)


def bind_address(host: str, port: str) -> str:
    """`host:port` as gunicorn reads a bind: an IPv6 address in brackets (`::` alone would
    read as an empty host and an empty port)."""
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"
