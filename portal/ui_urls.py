"""Browser pages of the accounts domain."""

from django.contrib.auth import views as auth_views
from django.urls import path

from portal import ui

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", ui.LogoutView.as_view(), name="logout"),
    path("", ui.dashboard, name="dashboard"),
    path("groups/", ui.group_list, name="group-list"),
    path("groups/<str:name>/", ui.group_detail, name="group-detail"),
    path("account/", ui.account, name="account"),
    path("account/tokens/", ui.api_tokens, name="api-tokens-page"),
]
