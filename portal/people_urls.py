"""People pages (admins) and the one-time set-password link's page."""

from django.urls import path

from portal import people_pages

urlpatterns = [
    path("people/", people_pages.people, name="people"),
    path("people/<str:username>/", people_pages.person, name="person"),
    path(
        "account/set-password/<uidb64>/<token>/",
        people_pages.SetPasswordView.as_view(),
        name="set-password",
    ),
]
