"""Reading a request's raw headers the way Django's WSGI request reads them."""

from __future__ import annotations


def joined_header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """A header's value; a repeated one joined with commas, as Django sees it (two
    Authorization headers are then malformed on the fast path and in Django alike, rather
    than the first one winning on the fast path)."""
    found = None
    for key, value in headers:
        if key == name:
            found = value if found is None else found + b"," + value
    return found
