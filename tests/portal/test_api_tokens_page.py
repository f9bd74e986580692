"""The account's API tokens page shows a page of tokens at a time, the usable ones first.

It listed every token, revoked included: 1,133 ms and 5.2 MB of HTML for a user whose
SDK logins had left 5,019.
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from groups import services
from groups.models import ApiToken
from portal.ui import TOKENS_PER_PAGE
from tests.helpers.cast import PASSWORD


def _shown(response) -> list[str]:
    """The prefixes in the tokens table, in order."""
    table = response.content.decode().split('id="tokens-table"')[1].split("</table>")[0]
    return re.findall(r"<code>(nmu_[^<]{8})…</code>", table)


def test_a_page_of_tokens_the_usable_ones_first_then_the_latest_revoked(cast):
    now = timezone.now()
    revoked = []
    for n in range(TOKENS_PER_PAGE + 20):
        token, _ = services.issue_api_token(cast.owner, "login", from_login=True)
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=now - timedelta(hours=n))
        revoked.append(token.prefix)  # the most recently revoked first
    active = [services.issue_api_token(cast.owner, name)[0].prefix for name in ("laptop", "ci", "notebook")]
    client = Client()
    assert client.login(username="owner", password=PASSWORD)

    first = client.get("/account/tokens/")
    assert first.status_code == 200
    assert _shown(first) == [*reversed(active), *revoked[: TOKENS_PER_PAGE - 3]]
    page = first.content.decode()
    assert "Page 1 of 2" in page and 'href="?page=2"' in page
    assert "deleted 30 days later" in page

    second = client.get("/account/tokens/?page=2")
    assert _shown(second) == revoked[TOKENS_PER_PAGE - 3 :]
    assert _shown(client.get("/account/tokens/?page=99")) == _shown(second)  # past the end: the last page
    assert _shown(client.get("/account/tokens/?page=x")) == _shown(first)
