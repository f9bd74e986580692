"""Model pages: the upload form uses the same service as the API."""

from django.test import Client

from models_app.models import MLModel
from tests.conftest import PASSWORD
from tests.models_app.uploads import file, sync_payload


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_form_offers_host_python_versions_and_user_groups(cast):
    page = _login(cast.owner).get("/models/new/")
    html = page.content.decode()
    assert page.status_code == 200
    for version in ("3.8", "3.9", "3.13"):
        assert f'<option value="{version}"' in html
    assert '<option value="3.7"' not in html
    assert '<option value="datarisk"' in html and "other-team" not in html


def test_upload_through_form_creates_model(cast):
    client = _login(cast.owner)
    payload = sync_payload(env=file(".env", "API_KEY=form-secret\n"))
    response = client.post("/models/new/", payload)
    model = MLModel.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/models/{model.hash}/"
    page = client.get(response["Location"]).content.decode()
    assert "Teste Sync" in page and "API_KEY" in page and "form-secret" not in page
    assert model.builds.get().status == "Queued"


def test_form_errors_are_shown_next_to_the_field(cast):
    client = _login(cast.owner)
    response = client.post("/models/new/", sync_payload(source=file("app.py", "def score(x):\n  pass\n")))
    assert response.status_code == 400
    html = response.content.decode()
    assert "has-error" in html and "must accept exactly two positional arguments" in html
    assert not MLModel.objects.exists()


def test_model_page_outsider_404_and_actions(cast):
    owner = _login(cast.owner)
    owner.post("/models/new/", sync_payload())
    model = MLModel.objects.get()
    assert _login(cast.outsider).get(f"/models/{model.hash}/").status_code == 404
    assert _login(cast.outsider).post(f"/models/{model.hash}/disable/").status_code == 404
    owner.post(f"/models/{model.hash}/disable/")
    model.refresh_from_db()
    assert model.status == "Disabled"
    response = owner.post(f"/models/{model.hash}/disable/", follow=True)
    assert "cannot be disabled" in response.content.decode()
    assert owner.get(f"/models/{model.hash}/disable/").status_code == 405


def test_dashboard_lists_models_of_my_groups_only(cast):
    _login(cast.owner).post("/models/new/", sync_payload())
    assert "Teste Sync" in _login(cast.teammate).get("/").content.decode()
    assert "Teste Sync" not in _login(cast.outsider).get("/").content.decode()
