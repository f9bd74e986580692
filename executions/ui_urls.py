"""Browser pages of executions (the API is in executions/urls.py)."""

from django.urls import path

from executions import views

urlpatterns = [
    path("models/<str:model_hash>/executions/<int:number>/", views.execution_page, name="execution-page"),
]
