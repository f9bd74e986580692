"""The rules around accounts an admin manages: what deactivation ends for good, who may
act on a superuser, how names are compared, and the messages of refused credentials."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from groups import services
from groups.models import Membership
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client

User = get_user_model()


def _staff_admin(name: str = "staffer"):
    """An admin as the People page and the API make them: staff, not a superuser."""
    return User.objects.create_user(name, password=PASSWORD, is_staff=True)


# --- deactivation ends sessions and pending links for good ---------------------------


def test_reactivation_does_not_bring_back_a_session_ended_by_deactivation(cast):
    browser = Client()
    assert browser.login(username="teammate", password=PASSWORD)
    assert browser.get("/").status_code == 200
    admin = api_client(cast.admin)
    admin.post("/api/v1/users/teammate/deactivate", {}, format="json")
    admin.post("/api/v1/users/teammate/activate", {}, format="json")
    assert browser.get("/")["Location"].startswith("/login/")
    assert Client().login(username="teammate", password=PASSWORD)  # the password stands


def test_a_link_made_before_deactivation_stays_dead_after_reactivation(cast):
    link = services.create_user(username="ana")
    services.set_active(link.user, False, actor=cast.admin)
    services.set_active(link.user, True, actor=cast.admin)
    page = Client().get(link.path, follow=True)
    assert b"This link does not work" in page.content
    fresh = services.reset_user(User.objects.get(username="ana"), actor=cast.admin)
    opened = Client().get(fresh.path)
    assert opened.status_code == 302  # a reset's new link works


def test_deactivating_ends_only_that_users_sessions(cast):
    theirs, mine = Client(), Client()
    assert theirs.login(username="teammate", password=PASSWORD)
    assert mine.login(username="owner", password=PASSWORD)
    services.set_active(cast.teammate, False, actor=cast.admin)
    assert mine.get("/").status_code == 200


def test_a_deactivated_owner_is_not_the_groups_other_owner(cast):
    second = User.objects.create_user("second", password=PASSWORD)
    services.set_membership(cast.group, second, Membership.Role.OWNER)
    services.set_active(second, False, actor=cast.admin)
    response = api_client(cast.owner).delete("/api/v1/groups/datarisk/members/owner")
    assert response.status_code == 409 and "only owner" in response.json()["detail"]
    assert Membership.objects.filter(group=cast.group, user=cast.owner, role="owner").exists()


# --- superusers ----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["deactivate", "reset"])
def test_an_admin_who_is_not_a_superuser_cannot_deactivate_or_reset_one(cast, action):
    response = api_client(_staff_admin()).post(f"/api/v1/users/admin/{action}", {}, format="json")
    assert response.status_code == 400
    assert "'admin' is a superuser: only a superuser can" in response.json()["detail"]
    admin = User.objects.get(username="admin")
    assert admin.is_active and admin.check_password(PASSWORD)


@pytest.mark.parametrize("action", ["deactivate", "reset"])
def test_a_superuser_can_deactivate_or_reset_another(cast, action):
    User.objects.create_superuser("root2", password=PASSWORD)
    response = api_client(cast.admin).post(f"/api/v1/users/root2/{action}", {}, format="json")
    assert response.status_code in (200, 201), response.json()


def test_the_people_page_refuses_it_too(cast):
    page = Client()
    page.force_login(_staff_admin())
    answer = page.post("/people/admin/", {"action": "deactivate"}, follow=True)
    assert "only a superuser can" in answer.content.decode()
    assert User.objects.get(username="admin").is_active


# --- names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [("Élise", "élise"), ("ÄNNE", "änne"), ("ｆｕｌｌ", "full"), ("full", "ＦＵＬＬ")],
)
def test_names_equal_ignoring_unicode_case_or_width_are_one_name(cast, first, second):
    client = api_client(cast.admin)
    assert client.post("/api/v1/users", {"username": first}, format="json").status_code == 201
    again = client.post("/api/v1/users", {"username": second}, format="json")
    assert again.status_code == 400 and "already exists" in again.json()["errors"]["username"][0]


def test_a_name_is_stored_as_the_login_page_reads_it(cast):
    response = api_client(cast.admin).post("/api/v1/users", {"username": "ｆｕｌｌ"}, format="json")
    assert response.status_code == 201 and response.json()["username"] == "full"
    user = User.objects.get(username="full")
    user.set_password(PASSWORD)
    user.save()
    assert Client().post("/login/", {"username": "ｆｕｌｌ", "password": PASSWORD}).status_code == 302
    login = api_client().post(
        "/api/v1/auth/login", {"username": "ｆｕｌｌ", "password": PASSWORD}, format="json"
    )
    assert login.status_code == 201 and login.json()["user"]["username"] == "full"


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(cast, name):
    response = api_client(cast.admin).post("/api/v1/users", {"username": name}, format="json")
    assert response.status_code == 400
    assert "a page's address could not name it" in response.json()["errors"]["username"][0]


def test_adding_a_member_finds_the_account_whatever_the_case(cast):
    response = api_client(cast.owner).post(
        "/api/v1/groups/datarisk/members", {"username": "OUTSIDER"}, format="json"
    )
    assert response.status_code == 201 and response.json()["username"] == "outsider"
    removed = api_client(cast.owner).delete("/api/v1/groups/datarisk/members/Outsider")
    assert removed.status_code == 204


# --- messages --------------------------------------------------------------------------


def test_a_deactivated_user_with_the_right_password_is_told_so(cast):
    services.set_active(cast.teammate, False, actor=cast.admin)
    right = api_client().post(
        "/api/v1/auth/login", {"username": "teammate", "password": PASSWORD}, format="json"
    )
    assert right.status_code == 401
    assert right.json()["detail"] == "This user account is disabled: ask an admin to reactivate it."
    wrong = api_client().post(
        "/api/v1/auth/login", {"username": "teammate", "password": "nope"}, format="json"
    )
    assert wrong.json()["detail"] == "Wrong username or password."


def test_unknown_and_revoked_personal_tokens_are_told_apart(cast):
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION="Token nmu_not-a-token")
    assert client.get("/api/v1/auth/me").json()["detail"].startswith("Unknown API token.")
    token, value = services.issue_api_token(cast.teammate, "laptop")
    services.revoke_api_token(token)
    client.credentials(HTTP_AUTHORIZATION=f"Token {value}")
    assert client.get("/api/v1/auth/me").json()["detail"].startswith("This API token was revoked on ")


def test_a_group_token_sent_as_a_user_token_is_told_what_it_is_for(cast):
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {cast.group_token}")
    response = client.get("/api/v1/models")
    assert response.status_code == 401
    assert response.json()["detail"].startswith(
        "A group token (Authorization: Bearer nmg_…) only calls models"
    )


def test_unknown_names_and_ids_are_404s_that_say_what(cast):
    admin = api_client(cast.admin)
    assert admin.post("/api/v1/users/ghost/reset", {}, format="json").json()["detail"] == (
        "No user named 'ghost' (GET /api/v1/users lists them)."
    )
    assert admin.delete("/api/v1/groups/datarisk/members/ghost").json()["detail"] == "No user named 'ghost'."
    token_id = "6f1c2a9e-8b1d-4c5e-9f00-123456789abc"
    missing = admin.delete(f"/api/v1/auth/tokens/{token_id}")
    assert missing.status_code == 404 and f"no API token with id '{token_id}'" in missing.json()["detail"]


def test_the_same_refusals_read_the_same_in_the_api_and_on_the_pages(cast):
    admin = api_client(cast.admin)
    api_taken = admin.post("/api/v1/groups", {"name": "datarisk"}, format="json").json()["errors"]["name"]
    assert api_taken == ["A group with this name already exists: choose another name."]
    api_role = admin.post(
        "/api/v1/groups/datarisk/members", {"username": "outsider", "role": "admin"}, format="json"
    )
    assert api_role.json()["errors"]["role"] == ["'admin' is not a role: choose member or owner."]
    page = Client()
    page.force_login(cast.admin)
    answer = page.post(
        "/groups/datarisk/", {"action": "add-member", "member-username": "outsider", "member-role": "admin"}
    )
    assert "&#x27;admin&#x27; is not a role: choose member or owner." in answer.content.decode()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/groups", {"name": "fresh"}),
        ("/api/v1/groups/datarisk/refresh-token", {"force": True}),
        ("/api/v1/auth/tokens", {"name": "laptop"}),
    ],
)
def test_answers_that_carry_a_token_are_not_stored(cast, path, body):
    response = api_client(cast.admin).post(path, body, format="json")
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"


def test_a_login_answer_is_not_stored(cast):
    response = api_client().post(
        "/api/v1/auth/login", {"username": "owner", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"


def test_the_model_admin_neither_deletes_nor_moves_a_model(cast):
    from models_app.admin import MLModelAdmin
    from models_app.models import MLModel

    model_admin = MLModelAdmin(MLModel, None)
    assert model_admin.has_delete_permission(None) is False
    assert {"group", "status"} <= set(model_admin.readonly_fields)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/auth/tokens", {"name": "laptop\u202egpj.exe"}, "name"),
        (
            "/api/v1/training/experiments",
            {"experiment_name": "churn\u202e", "group": "datarisk"},
            "experiment_name",
        ),
    ],
)
def test_names_refuse_direction_marks_that_disguise_them(cast, path, body, field):
    response = api_client(cast.owner).post(path, body, format="json")
    assert response.status_code == 400
    assert "control characters (\\u202e)" in response.json()["errors"][field][0]


def test_a_model_name_refuses_direction_marks(cast):
    from tests.helpers.uploads import sync_payload

    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(name="invoice\u202elmth.exe"), format="multipart"
    )
    assert response.status_code == 400 and "control characters" in response.json()["errors"]["name"][0]


# --- your own password -------------------------------------------------------------------

NEW = "a-much-longer-new-password-77"


def test_a_user_changes_their_password_through_the_api(cast):
    other_browser = Client()
    assert other_browser.login(username="teammate", password=PASSWORD)
    client = api_client(cast.teammate)
    wrong = client.post("/api/v1/auth/password", {"old_password": "nope", "new_password": NEW}, format="json")
    assert wrong.status_code == 400 and "old_password" in wrong.json()["errors"]
    weak = client.post(
        "/api/v1/auth/password", {"old_password": PASSWORD, "new_password": "123"}, format="json"
    )
    assert weak.status_code == 400 and "new_password" in weak.json()["errors"]
    done = client.post(
        "/api/v1/auth/password", {"old_password": PASSWORD, "new_password": NEW}, format="json"
    )
    assert done.status_code == 204
    assert Client().login(username="teammate", password=NEW)
    assert other_browser.get("/")["Location"].startswith("/login/")  # other sessions end
    assert client.get("/api/v1/auth/me").status_code == 200  # tokens keep working


def test_a_user_changes_their_password_on_the_account_page(cast):
    browser, other = Client(), Client()
    assert browser.login(username="owner", password=PASSWORD)
    assert other.login(username="owner", password=PASSWORD)
    page = browser.get("/account/").content.decode()
    assert 'id="password-form"' in page and 'name="password-old_password"' in page
    refused = browser.post(
        "/account/",
        {
            "action": "password",
            "password-old_password": "nope",
            "password-new_password1": NEW,
            "password-new_password2": NEW,
        },
    )
    assert refused.status_code == 400
    done = browser.post(
        "/account/",
        {
            "action": "password",
            "password-old_password": PASSWORD,
            "password-new_password1": NEW,
            "password-new_password2": NEW,
        },
        follow=True,
    )
    assert "Your password is changed" in done.content.decode()
    assert browser.get("/").status_code == 200  # this session stays
    assert other.get("/")["Location"].startswith("/login/")
    assert User.objects.get(username="owner").check_password(NEW)


def test_the_link_is_mailed_in_the_admins_page_language(cast):
    from django.core import mail

    page = Client(HTTP_ACCEPT_LANGUAGE="pt-BR")
    page.force_login(cast.admin)
    page.post("/people/", {"username": "maria", "email": "maria@example.com", "send_email": "true"})
    (sent,) = mail.outbox
    assert sent.subject == "Sua conta no Neomaril"
    assert sent.body.startswith("Olá, maria,") and "Depois, entre como 'maria'." in sent.body
    assert " UTC" in sent.body and "/account/set-password/" in sent.body


def test_the_api_mails_the_link_in_english(cast):
    from django.core import mail

    api_client(cast.admin).post(
        "/api/v1/users", {"username": "ana", "email": "ana@example.com", "send_email": True}, format="json"
    )
    assert mail.outbox[0].subject == "Your Neomaril account" and mail.outbox[0].body.startswith("Hello ana,")


def test_a_name_taken_in_another_spelling_names_the_existing_account(cast):
    client = api_client(cast.admin)
    assert client.post("/api/v1/users", {"username": "ß"}, format="json").status_code == 201
    again = client.post("/api/v1/users", {"username": "SS"}, format="json")
    assert again.status_code == 400
    assert again.json()["errors"]["username"] == [
        "A user named 'ß' already exists, and user names are compared ignoring case: "
        "'SS' is the same name. Choose another."
    ]


@pytest.mark.parametrize(("asked", "found"), [("SS", "ß"), ("ss", "ß"), ("ADMIN", "admin")])
def test_every_user_endpoint_finds_the_account_as_the_create_compares_names(cast, asked, found):
    # The name a create refuses as taken is the name the lookups find (not a 404).
    client = api_client(cast.admin)
    User.objects.create_user("ß")
    assert client.get(f"/api/v1/users/{asked}").json()["username"] == found
    page = Client()
    page.force_login(cast.admin)
    assert page.get(f"/people/{asked}/").status_code == 200
    reset = client.post(f"/api/v1/users/{asked}/reset", {}, format="json")  # last: it ends sessions
    assert reset.status_code == 201 and found in reset.json()["detail"]


def test_an_unknown_user_is_still_404(cast):
    response = api_client(cast.admin).get("/api/v1/users/nobody")
    assert response.status_code == 404
    assert response.json()["detail"] == "No user named 'nobody' (GET /api/v1/users lists them)."
