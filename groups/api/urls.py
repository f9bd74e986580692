"""Accounts endpoints under /api/v1/."""

from django.urls import path

from groups.api import views

urlpatterns = [
    path("auth/login", views.LoginView.as_view(), name="api-login"),
    path("auth/me", views.MeView.as_view(), name="api-me"),
    path("auth/password", views.PasswordChangeView.as_view(), name="api-password"),
    path("auth/tokens", views.ApiTokenListView.as_view(), name="api-tokens"),
    path("auth/tokens/<uuid:token_id>", views.ApiTokenDetailView.as_view(), name="api-token-detail"),
    path("users", views.UserListView.as_view(), name="api-users"),
    path("users/<str:username>", views.UserDetailView.as_view(), name="api-user-detail"),
    path("users/<str:username>/reset", views.UserResetView.as_view(), name="api-user-reset"),
    path("users/<str:username>/deactivate", views.UserDeactivateView.as_view(), name="api-user-deactivate"),
    path("users/<str:username>/activate", views.UserActivateView.as_view(), name="api-user-activate"),
    path("groups", views.GroupListView.as_view(), name="api-groups"),
    path("groups/<str:name>", views.GroupDetailView.as_view(), name="api-group-detail"),
    path("groups/<str:name>/members", views.GroupMembersView.as_view(), name="api-group-members"),
    path(
        "groups/<str:name>/members/<str:username>",
        views.GroupMemberDetailView.as_view(),
        name="api-group-member-detail",
    ),
    path(
        "groups/<str:name>/refresh-token",
        views.GroupTokenRefreshView.as_view(),
        name="api-group-refresh-token",
    ),
]
