"""The cast every view test uses: an owner, a teammate, an outsider and an admin.

The `cast` fixture (tests/conftest.py) builds it; tests log its users in with PASSWORD.
"""

from __future__ import annotations

from dataclasses import dataclass

from groups.models import Group

PASSWORD = "correct-horse-battery-staple"


@dataclass
class Cast:
    owner: object
    teammate: object
    outsider: object
    admin: object
    group: Group
    group_token: str
    other_group: Group
    other_token: str
