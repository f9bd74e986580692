"""The cast every view test uses: an owner, a teammate, an outsider and an admin."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from portal import services
from portal.models import Group, Membership

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


@pytest.fixture
def cast(db) -> Cast:
    User = get_user_model()
    admin = User.objects.create_superuser("admin", password=PASSWORD)
    owner = User.objects.create_user("owner", password=PASSWORD)
    teammate = User.objects.create_user("teammate", password=PASSWORD)
    outsider = User.objects.create_user("outsider", password=PASSWORD)
    group, token = services.create_group(name="datarisk", description="Risk models", created_by=admin)
    Membership.objects.filter(group=group, user=admin).delete()
    services.set_membership(group, owner, Membership.Role.OWNER)
    services.set_membership(group, teammate, Membership.Role.MEMBER)
    other, other_token = services.create_group(name="other-team", created_by=None)
    services.set_membership(other, outsider, Membership.Role.OWNER)
    return Cast(owner, teammate, outsider, admin, group, token, other, other_token)


def api_client(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        _, value = services.issue_api_token(user, "test")
        client.credentials(HTTP_AUTHORIZATION=f"Token {value}")
    return client


@pytest.fixture
def as_user():
    return api_client


@pytest.fixture(autouse=True)
def _fast_test_settings(settings):
    # Password stretching dominates test time otherwise; hashing itself is Django's.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # No collectstatic in unit tests: serve from the app folders without a manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def run_async(coroutine):
    """asyncio.run() on a thread of its own.

    Playwright's sync API (browser tests) keeps an event loop running on the main
    thread for the whole session, where asyncio.run() refuses to start another.
    """
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        return executor.submit(asyncio.run, coroutine).result()
