"""A group's storage: what its files take, counted as they come and walked every few
minutes, and its quota, which refuses an upload (507 group_storage_full) before anything
of it is kept."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from groups import storage
from groups.models import Group
from groups.uploads import MIN_ENTRY_BYTES, folder_bytes
from models_app import tasks as build_tasks
from models_app.models import MLModel
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.training import custom_payload, finished_run, make_experiment
from tests.helpers.uploads import file, sync_payload
from training.models import TrainingRun

MB = 1024 * 1024
XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
SCORE = "def score(data, base_path):\n    return {'ok': True}\n"


def _used(group: Group) -> int:
    return Group.objects.get(pk=group.pk).stored_bytes


def _full(group: Group, quota_mb: int = 1) -> None:
    """The group keeps exactly its quota: one more byte is over it."""
    Group.objects.filter(pk=group.pk).update(storage_quota_mb=quota_mb, stored_bytes=quota_mb * MB)


def _leftovers() -> list[Path]:
    return [
        *Path(settings.FILE_UPLOAD_TEMP_DIR).glob("tmp*.upload*"),
        *settings.MODELS_DIR.glob(".incoming-*"),
        *settings.TRAININGS_DIR.glob(".incoming-*"),
    ]


# ------------------------------------------------------------------------- measuring


def test_folder_bytes_counts_what_was_written(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"x" * MB)
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * (2 * MB))
    (tmp_path / "link").symlink_to("/usr/bin/python3")  # not followed
    assert 3 * MB <= folder_bytes(tmp_path) < 3 * MB + 64 * 1024
    assert folder_bytes(tmp_path / "missing") == 0


def test_folder_bytes_counts_links_folders_and_empty_files_at_a_block_each(tmp_path):
    """Each takes an inode, a long link target a block: a job made thousands of them in its
    folder while its count said 4 KiB."""
    for n in range(300):
        (tmp_path / f"link{n}").symlink_to("/" + "x" * 4000)
        (tmp_path / f"empty{n}").touch()
        (tmp_path / f"dir{n}").mkdir()
    assert folder_bytes(tmp_path) >= 900 * MIN_ENTRY_BYTES


def test_folder_bytes_stops_counting_past_the_limit(tmp_path):
    for n in range(100):
        (tmp_path / f"empty{n}").touch()
    counted = folder_bytes(tmp_path, stop_above=10 * MIN_ENTRY_BYTES)
    assert 10 * MIN_ENTRY_BYTES < counted <= 11 * MIN_ENTRY_BYTES


def test_a_groups_measure_is_its_models_executions_runs_and_monitors_folders_only(cast):
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(model=file("model.pkl", b"m" * MB)), format="multipart"
    )
    assert response.status_code == 201, response.content
    model = MLModel.objects.get(hash=response.json()["hash"])
    run = finished_run(make_experiment(cast.group, cast.owner))
    others = make_experiment(cast.other_group, cast.outsider, name="theirs")
    (others.folder / "1").mkdir(parents=True)
    (others.folder / "1" / "big.bin").write_bytes(b"o" * (3 * MB))
    executions = settings.EXECUTIONS_DIR / model.hash / "1"
    executions.mkdir(parents=True)
    (executions / "result.csv").write_bytes(b"r" * (2 * MB))
    monitor_code = settings.MONITORS_DIR / model.hash / "code"
    monitor_code.mkdir(parents=True)
    (monitor_code / "preprocess.py").write_bytes(b"p" * MB)

    expected = sum(
        folder_bytes(folder)
        for folder in (model.folder, run.experiment.folder, settings.EXECUTIONS_DIR / model.hash)
    ) + folder_bytes(settings.MONITORS_DIR / model.hash)
    assert 4 * MB < storage.measure(cast.group.pk) == expected
    assert 3 * MB <= storage.measure(cast.other_group.pk) < 4 * MB


def test_the_housekeeping_walks_groups_never_measured_or_measured_long_ago(cast):
    Group.objects.update(stored_bytes=123, storage_measured_at=None)
    Group.objects.filter(pk=cast.other_group.pk).update(storage_measured_at=timezone.now())
    run = finished_run(make_experiment(cast.group, cast.owner))
    assert build_tasks.housekeeping()["measured_group_storage"] == 1  # the other group is fresh
    group = Group.objects.get(pk=cast.group.pk)
    assert group.stored_bytes == folder_bytes(run.experiment.folder) > 0
    assert group.storage_measured_at is not None
    assert _used(cast.other_group) == 123
    assert build_tasks.housekeeping()["measured_group_storage"] == 0

    Group.objects.filter(pk=cast.other_group.pk).update(
        storage_measured_at=timezone.now() - storage.MEASURE_EVERY - timezone.timedelta(seconds=1)
    )
    assert build_tasks.housekeeping()["measured_group_storage"] == 1
    assert _used(cast.other_group) == 0


def test_bytes_taken_while_the_folders_are_walked_stay_counted(cast, monkeypatch):
    Group.objects.update(stored_bytes=10 * MB, storage_measured_at=None)
    walk = storage.measure

    def walk_while_an_upload_lands(group_id):
        if group_id == cast.group.pk:
            storage.take(cast.group, 2 * MB)
        return walk(group_id)

    monkeypatch.setattr(storage, "measure", walk_while_an_upload_lands)
    storage.measure_stale()
    assert _used(cast.group) == 2 * MB + walk(cast.group.pk)


# ----------------------------------------------------------------------- the quota


def test_an_upload_is_counted_as_the_group_keeps_it(cast):
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(model=file("model.pkl", b"m" * MB)), format="multipart"
    )
    assert response.status_code == 201, response.content
    model = MLModel.objects.get(hash=response.json()["hash"])
    assert _used(cast.group) == folder_bytes(model.folder) > MB
    assert _used(cast.other_group) == 0


def test_an_upload_past_the_groups_quota_is_507_and_nothing_is_kept(cast, settings):
    settings.GROUP_STORAGE_MB = 2
    client = api_client(cast.owner)
    first = client.post(
        "/api/v1/models", sync_payload(model=file("model.pkl", b"m" * MB)), format="multipart"
    )
    assert first.status_code == 201, first.content
    used = _used(cast.group)
    folders = sorted(settings.MODELS_DIR.iterdir())

    response = client.post(
        "/api/v1/models", sync_payload(name="Second", model=file("model.pkl", b"m" * MB)), format="multipart"
    )
    assert response.status_code == 507, response.content
    body = response.json()
    assert body["code"] == "group_storage_full"
    assert body["detail"].startswith(
        f"The group 'datarisk' keeps {used / MB:,.1f} MB of its 2.0 MB storage quota, and this needs 1.0 MB more: "
        "nothing was stored."
    ), body["detail"]
    assert body["detail"].endswith(
        "(their space is free again at once; executions' files go by retention), or ask an admin to raise the group's quota."
    )
    assert MLModel.objects.count() == 1 and _used(cast.group) == used
    assert _leftovers() == []
    assert sorted(settings.MODELS_DIR.iterdir()) == folders

    # Another group's quota is its own.
    cast.other_group.memberships.create(user=cast.owner, role="member")
    theirs = client.post("/api/v1/models", sync_payload(group="other-team"), format="multipart")
    assert theirs.status_code == 201, theirs.content


def test_the_groups_own_quota_comes_before_the_servers(cast, settings):
    settings.GROUP_STORAGE_MB = 1
    Group.objects.filter(pk=cast.group.pk).update(stored_bytes=5 * MB, storage_quota_mb=0)  # no limit
    client = api_client(cast.owner)
    assert client.post("/api/v1/models", sync_payload(), format="multipart").status_code == 201

    settings.GROUP_STORAGE_MB = 0
    Group.objects.filter(pk=cast.group.pk).update(storage_quota_mb=5)
    response = client.post("/api/v1/models", sync_payload(name="Second"), format="multipart")
    assert response.status_code == 507 and "of its 5.0 MB storage quota" in response.json()["detail"]


def test_a_version_and_a_training_run_past_the_quota_are_refused_too(cast):
    model = MLModel.objects.get(
        hash=api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart").json()["hash"]
    )
    experiment = make_experiment(cast.group, cast.owner)
    _full(cast.group)
    version = sync_payload()
    for inherited in ("name", "group", "operation"):
        version.pop(inherited)
    response = api_client(cast.owner).post(
        f"/api/v1/models/{model.hash}/versions", version, format="multipart"
    )
    assert response.status_code == 507 and response.json()["code"] == "group_storage_full"
    assert model.all_versions().count() == 1

    response = api_client(cast.owner).post(
        f"/api/v1/training/experiments/{experiment.hash}/runs", custom_payload(), format="multipart"
    )
    assert response.status_code == 507 and response.json()["code"] == "group_storage_full"
    assert not TrainingRun.objects.exists() and _leftovers() == []
    assert _used(cast.group) == MB


def _model_page(cast):
    return "/models/new/", sync_payload()


def _version_page(cast):
    model = MLModel.objects.get(
        hash=api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart").json()["hash"]
    )
    MLModel.objects.update(status=MLModel.Status.DEPLOYED)
    payload = sync_payload()
    for inherited in ("name", "group", "operation"):
        payload.pop(inherited)
    return f"/models/{model.hash}/versions/new/", payload


def _training_run_page(cast):
    experiment = make_experiment(cast.group, cast.owner)
    return f"/training/{experiment.hash}/runs/new/", custom_payload()


def _promotion_page(cast):
    run = finished_run(make_experiment(cast.group, cast.owner))
    return f"/training/{run.experiment.hash}/runs/1/promote/", {
        "name": "m",
        "model_reference": "score",
        "source": file("app.py", SCORE),
        "schema": '{"a": 1}',
    }


@pytest.mark.parametrize("script", [False, True], ids=["page", "upload-script"])
@pytest.mark.parametrize(
    "page",
    [_model_page, _version_page, _training_run_page, _promotion_page],
    ids=["model", "version", "training-run", "promotion"],
)
def test_an_upload_page_past_the_quota_is_507_with_the_reason_on_its_form(cast, page, script):
    url, data = page(cast)
    _full(cast.group)
    client = Client()
    assert client.login(username=cast.owner.username, password=PASSWORD)
    response = client.post(url, data, **(XHR if script else {}))
    assert response.status_code == 507, response.content[:3000]
    reason = "The group 'datarisk' keeps 1.0 MB of its 1.0 MB storage quota, and this needs "
    if script:
        assert response.json()["errors"]["__all__"][0].startswith(reason)
    else:
        assert reason in html.unescape(response.content.decode())
    assert MLModel.objects.count() == (1 if page is _version_page else 0)
    assert not TrainingRun.objects.exclude(number=1, status="Succeeded").exists()
    assert _leftovers() == []


def test_a_deleted_models_space_is_free_again_at_once(cast, settings):
    settings.GROUP_STORAGE_MB = 2
    client = api_client(cast.owner)
    first = client.post(
        "/api/v1/models", sync_payload(model=file("model.pkl", b"m" * MB)), format="multipart"
    )
    Group.objects.update(storage_measured_at=timezone.now())  # no walk due
    second = sync_payload(name="Second", model=file("model.pkl", b"m" * MB))
    assert client.post("/api/v1/models", second, format="multipart").status_code == 507

    assert client.delete(f"/api/v1/models/{first.json()['hash']}").status_code in (200, 204)
    assert _used(cast.group) == 0
    second = sync_payload(name="Second", model=file("model.pkl", b"m" * MB))
    assert client.post("/api/v1/models", second, format="multipart").status_code == 201


# -------------------------------------------------------------------------- the API


def test_a_group_shows_its_storage_and_quota(cast, settings):
    settings.GROUP_STORAGE_MB = 100
    Group.objects.filter(pk=cast.group.pk).update(stored_bytes=5 * MB)
    body = api_client(cast.teammate).get("/api/v1/groups/datarisk").json()
    assert body["storage_quota_mb"] is None
    assert body["storage"] == {"used_bytes": 5 * MB, "quota_bytes": 100 * MB, "measured_at": None}
    settings.GROUP_STORAGE_MB = 0
    listed = api_client(cast.teammate).get("/api/v1/groups").json()
    assert listed[0]["storage"]["quota_bytes"] is None


def test_only_admins_change_a_groups_quota(cast):
    url = "/api/v1/groups/datarisk"
    response = api_client(cast.owner).patch(url, {"storage_quota_mb": 10**6}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "Only admins can change a group's description or storage quota."
    assert api_client(cast.outsider).patch(url, {"storage_quota_mb": 1}, format="json").status_code == 404

    admin = api_client(cast.admin)
    response = admin.patch(url, {"storage_quota_mb": 2048}, format="json")
    assert response.status_code == 200, response.content
    assert (
        response.json()["storage_quota_mb"] == 2048 and response.json()["storage"]["quota_bytes"] == 2048 * MB
    )
    assert admin.patch(url, {"storage_quota_mb": None}, format="json").json()["storage_quota_mb"] is None
    assert Group.objects.get(pk=cast.group.pk).storage_quota_mb is None


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"storage_quota_mb": -1}, "storage_quota_mb", "Ensure this value is greater than or equal to 0."),
        ({"storage_quota_mb": "lots"}, "storage_quota_mb", "A valid integer is required."),
        ({"stored_bytes": 0}, "stored_bytes", None),
    ],
)
def test_a_bad_quota_change_is_400_naming_the_field(cast, body, field, message):
    response = api_client(cast.admin).patch("/api/v1/groups/datarisk", body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in errors
    if message:
        assert errors[field] == [message]
    assert Group.objects.get(pk=cast.group.pk).storage_quota_mb is None


@pytest.mark.parametrize(
    ("language", "used", "quota"), [("en", "5.0\xa0MB", "2.0\xa0GB"), ("pt-br", "5,0\xa0MB", "2,0\xa0GB")]
)
def test_the_group_page_shows_what_the_group_keeps_against_its_quota(cast, settings, language, used, quota):
    settings.GROUP_STORAGE_MB = 2048
    Group.objects.filter(pk=cast.group.pk).update(stored_bytes=5 * MB)
    client = Client(headers={"Accept-Language": language})
    assert client.login(username=cast.teammate.username, password=PASSWORD)
    page = client.get("/groups/datarisk/").content.decode()
    storage_card = page[page.index('id="storage"') :]
    assert f"<dd>{used}</dd>" in storage_card and f"<dd>{quota}</dd>" in storage_card
    assert f'<meter min="0" max="{2048 * MB}" value="{5 * MB}"' in storage_card

    settings.GROUP_STORAGE_MB = 0
    page = client.get("/groups/datarisk/").content.decode()
    assert "<meter" not in page and ("no limit" if language == "en" else "sem limite") in page


def _page_client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_an_admin_sets_the_quota_on_the_group_page(cast, settings):
    settings.GROUP_STORAGE_MB = 0
    admin = _page_client(cast.admin)
    assert 'name="quota-storage_quota_mb"' in admin.get("/groups/datarisk/").content.decode()
    response = admin.post(
        "/groups/datarisk/", {"action": "set-quota", "quota-storage_quota_mb": "2048"}, follow=True
    )
    assert "The storage quota of datarisk is now 2.0\xa0GB." in response.content.decode()
    assert Group.objects.get(pk=cast.group.pk).storage_quota_mb == 2048

    response = admin.post(
        "/groups/datarisk/", {"action": "set-quota", "quota-storage_quota_mb": ""}, follow=True
    )
    assert "The storage quota of datarisk is now no limit." in response.content.decode()
    assert Group.objects.get(pk=cast.group.pk).storage_quota_mb is None

    for bad in ("-5", str(2**30 + 1), "lots"):
        response = admin.post("/groups/datarisk/", {"action": "set-quota", "quota-storage_quota_mb": bad})
        assert response.status_code == 400, bad
        assert (
            'id="id_quota-storage_quota_mb_error" class="field-errors"><p class="error">'
            in response.content.decode()
        )
        assert Group.objects.get(pk=cast.group.pk).storage_quota_mb is None


def test_owners_see_the_quota_but_do_not_set_it(cast):
    owner = _page_client(cast.owner)
    page = owner.get("/groups/datarisk/").content.decode()
    assert 'id="storage"' in page and "quota-storage_quota_mb" not in page
    response = owner.post("/groups/datarisk/", {"action": "set-quota", "quota-storage_quota_mb": "999999"})
    assert response.status_code == 403
    assert Group.objects.get(pk=cast.group.pk).storage_quota_mb is None


def test_a_group_created_with_a_quota_keeps_it(cast):
    response = api_client(cast.admin).post(
        "/api/v1/groups", {"name": "quota-team", "storage_quota_mb": 512}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["storage"]["quota_bytes"] == 512 * MB
    assert Group.objects.get(name="quota-team").storage_quota_mb == 512


def test_the_admins_group_list_shows_what_each_group_keeps(cast, settings):
    settings.GROUP_STORAGE_MB = 0
    Group.objects.filter(pk=cast.group.pk).update(stored_bytes=3 * MB, storage_quota_mb=1024)
    page = _page_client(cast.admin).get("/admin/portal/group/").content.decode()
    assert "3.0\xa0MB of 1.0\xa0GB" in page and "0\xa0bytes (no limit)" in page


def test_saving_a_group_keeps_what_uploads_counted_meanwhile(cast):
    """An admin changing the description saved the whole row, with the figure read at the
    start of the request: 4 threads uploading while 2 changed it lost half their bytes."""
    group = Group.objects.get(pk=cast.group.pk)  # read before the uploads land
    storage.add(cast.group.pk, 5 * MB)
    group.description = "Risk models, renamed"
    group.save()
    assert Group.objects.get(pk=cast.group.pk).stored_bytes == 5 * MB

    response = api_client(cast.admin).patch(
        "/api/v1/groups/datarisk", {"description": "again"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["storage"]["used_bytes"] == 5 * MB
    assert Group.objects.get(pk=cast.group.pk).description == "again"
