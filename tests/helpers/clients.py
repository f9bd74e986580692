"""API clients holding the credentials a caller of the platform would send."""

from __future__ import annotations

from rest_framework.test import APIClient

from groups import services


def api_client(user=None) -> APIClient:
    """A client with a fresh personal API token of ``user`` (anonymous without one)."""
    client = APIClient()
    if user is not None:
        _, value = services.issue_api_token(user, "test")
        client.credentials(HTTP_AUTHORIZATION=f"Token {value}")
    return client


def token_client(token: str) -> APIClient:
    """A client sending a group token (what a model's callers use)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
