"""Two requests creating the same name at once: the one that comes second gets the 400 a
lone request for a taken name gets, never a 500 (the check and the insert are two steps)."""

from __future__ import annotations

import contextlib
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import close_old_connections

from groups.models import Group
from tests.helpers.clients import api_client
from training.models import Experiment
from training.services import get_or_create_experiment

TAKEN_NAME = "A group with this name already exists: choose another name."


@pytest.fixture
def name_taken_after_the_check(monkeypatch):
    """Another request inserts the same group name right before this one's insert."""
    original = Group.save

    def lose_the_race(group, *args, **kwargs):
        if group.pk is None:
            Group.objects.bulk_create([Group(name=group.name)])  # not through save()
        original(group, *args, **kwargs)

    monkeypatch.setattr(Group, "save", lose_the_race)


def test_a_group_name_taken_between_check_and_insert_is_400(cast, name_taken_after_the_check):
    response = api_client(cast.admin).post("/api/v1/groups", {"name": "racegrp"}, format="json")
    assert response.status_code == 400, response.content
    assert response.json() == {
        "detail": f"name: {TAKEN_NAME}",
        "code": "invalid",
        "errors": {"name": [TAKEN_NAME]},
    }


def test_a_group_name_taken_before_the_models_own_check_is_400(cast, monkeypatch):
    """The serializer checked; the name is taken by the time the model is checked and saved."""
    original = Group.full_clean

    def taken_first(group, *args, **kwargs):
        Group.objects.create(name=group.name)
        original(group, *args, **kwargs)

    monkeypatch.setattr(Group, "full_clean", taken_first)
    response = api_client(cast.admin).post("/api/v1/groups", {"name": "racegrp"}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"name": [TAKEN_NAME]}


def test_the_page_shows_the_taken_name_at_its_field(cast, client, name_taken_after_the_check):
    client.force_login(cast.admin)
    response = client.post("/groups/", {"name": "racegrp", "description": ""})
    assert response.status_code == 400
    assert response.context["form"].errors == {"name": [TAKEN_NAME]}


def test_a_user_name_taken_between_check_and_insert_is_400(cast, monkeypatch):
    User = get_user_model()
    original = User.set_unusable_password

    def lose_the_race(user):  # create_user's last step before its insert
        original(user)
        User.objects.create(username=user.username)

    monkeypatch.setattr(User, "set_unusable_password", lose_the_race)
    response = api_client(cast.admin).post("/api/v1/users", {"username": "raceuser"}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "username": ["A user named 'raceuser' already exists (user names are compared ignoring case)."]
    }


@pytest.mark.django_db(transaction=True)
def test_experiments_asked_for_at_once_by_name_are_one(monkeypatch):
    """Both requests looked for the experiment before either had created it: two rows."""
    user = get_user_model().objects.create_user("analyst")
    group = Group.objects.create(name="racers")
    lookups = threading.Barrier(2, timeout=2)
    original_filter = Experiment.objects.filter

    def filter_then_wait(*args, **kwargs):
        found = original_filter(*args, **kwargs).first()
        # Without a lock both get here before either creates; with it, the other request
        # waits for this one's lock and the barrier gives up.
        with contextlib.suppress(threading.BrokenBarrierError):
            lookups.wait()
        return Experiment.objects.none() if found is None else original_filter(pk=found.pk)

    monkeypatch.setattr(Experiment.objects, "filter", filter_then_wait)
    results = []

    def request():
        try:
            results.append(
                get_or_create_experiment(user, name="race-exp", model_type="Regression", group=group)
            )
        finally:
            close_old_connections()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.undo()
    assert Experiment.objects.filter(group=group, name="race-exp").count() == 1
    assert sorted(created for _, created in results) == [False, True]


def test_the_people_page_shows_a_user_name_taken_since_its_check(cast, client, monkeypatch):
    User = get_user_model()
    original = User.set_unusable_password

    def lose_the_race(user):
        original(user)
        User.objects.create(username=user.username)

    monkeypatch.setattr(User, "set_unusable_password", lose_the_race)
    client.force_login(cast.admin)
    response = client.post("/people/", {"username": "raceuser", "email": ""})
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "username": ["A user named 'raceuser' already exists (user names are compared ignoring case)."]
    }
