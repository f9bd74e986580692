"""Fixtures of the monitoring tests: a reference run, a Deployed model promoted from it,
and what the services queue (a module may define its own instead)."""

from __future__ import annotations

from unittest import mock

import pytest

from tests.helpers.monitors import deployed_model, reference_run, uploaded_long_ago


@pytest.fixture
def run(cast):
    return reference_run(cast.group)


@pytest.fixture
def model(cast, run):
    return uploaded_long_ago(deployed_model(cast.group, run))


@pytest.fixture
def queued():
    """What the services queued (django-q2's async_task) on commit."""
    with mock.patch("monitors.services.async_task") as async_task:
        yield async_task
