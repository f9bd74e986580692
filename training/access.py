"""Fetch experiments and runs *for this user*: members of the experiment's group (and admins)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from groups.access import groups_for
from training import services
from training.models import Experiment, TrainingRun


def experiments_for(user) -> QuerySet[Experiment]:
    return Experiment.objects.filter(group__in=groups_for(user))


def get_experiment_for_user(user, experiment_hash: str) -> Experiment:
    experiment = (
        experiments_for(user).select_related("group", "created_by").filter(hash=experiment_hash).first()
    )
    if experiment is None:
        raise Http404(f"No training experiment '{experiment_hash}' among your groups' experiments.")
    return experiment


def get_run_for_user(user, experiment_hash: str, number: int) -> TrainingRun:
    experiment = get_experiment_for_user(user, experiment_hash)
    run = services.get_run(experiment, number)
    if run is None:
        raise Http404(f"Experiment '{experiment_hash}' has no run {number}.")
    run.experiment = experiment
    return run
