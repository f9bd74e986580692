"""Secret tokens: generated with `secrets`, shown once, stored as SHA-256 digests.

Tokens are 256-bit random values, so a fast hash is enough (no password-style
stretching is needed: there is nothing to brute-force). A short prefix is kept in
clear so people can tell their tokens apart in lists.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

PREFIX_LENGTH = 12


@dataclass(frozen=True)
class NewToken:
    value: str  # shown to the user exactly once
    digest: str
    prefix: str


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_token(kind: str) -> NewToken:
    """A fresh token such as `nmu_…` (user API token) or `nmg_…` (group token)."""
    value = f"{kind}_{secrets.token_urlsafe(32)}"
    return NewToken(value=value, digest=digest(value), prefix=value[:PREFIX_LENGTH])
