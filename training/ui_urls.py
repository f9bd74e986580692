"""Browser pages of training (the API is in training/api_urls.py)."""

from django.urls import path

from training import pages

experiment = "training/<str:experiment_hash>"

urlpatterns = [
    path("training/", pages.experiment_list, name="training-list"),
    path(f"{experiment}/", pages.experiment_detail, name="training-experiment"),
    path(f"{experiment}/runs/new/", pages.run_new, name="training-run-new"),
    path(f"{experiment}/runs/<int:number>/", pages.run_detail, name="training-run"),
    path(f"{experiment}/runs/<int:number>/promote/", pages.run_promote, name="training-run-promote"),
    path(
        f"{experiment}/runs/<int:number>/delete-files/",
        pages.run_delete_files,
        name="training-run-delete-files",
    ),
]
