"""The Async smoke test's result is kept in the model's folder (smoke/<name>): monitoring tries
the preprocess on the sample input and this answer. Real builds, the host's interpreter as
the model's environment (no uv), the real runner in the real sandbox."""

from __future__ import annotations

import sys
import textwrap

import pytest

from models_app import tasks
from models_app.models import MLModel, ModelBuild
from tests.helpers.clients import api_client
from tests.helpers.uploads import file

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE = textwrap.dedent(
    """
    import os


    def score(data_path, model_path):
        output = os.path.join(data_path, "output.csv")
        with open(os.path.join(data_path, os.environ["inputFileName"])) as f, open(output, "w") as out:
            out.write(f.read().upper())
        return output


    def in_a_subfolder(data_path, model_path):
        os.mkdir(os.path.join(data_path, "results"))
        output = os.path.join(data_path, "results", "scores.csv")
        with open(output, "w") as out:
            out.write("score\\n0.5\\n")
        return "results/scores.csv"


    def through_a_link(data_path, model_path):
        real = os.path.join(data_path, "real.csv")
        with open(real, "w") as out:
            out.write("score\\n0.25\\n")
        os.symlink(real, os.path.join(data_path, "link.csv"))
        return os.path.join(data_path, "link.csv")
    """
)


def _deploy(client, entrypoint: str) -> MLModel:
    response = client.post(
        "/api/v1/models",
        {
            "name": f"Async {entrypoint}",
            "group": "datarisk",
            "operation": "Async",
            "model_reference": entrypoint,
            "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
            "source": file("app.py", SOURCE),
            "model": file("model.pkl", b"\x80\x04K\x01."),
            "requirements": file("requirements.txt", ""),
            "sample": file("input.csv", "a,b\n1,2\n"),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    model = MLModel.objects.get(hash=response.json()["hash"])
    tasks.build_model(model.builds.get(status=ModelBuild.Status.QUEUED).pk)
    model.refresh_from_db()
    return model


def _log(model: MLModel) -> str:
    return model.builds.order_by("-number").first().log


def test_the_async_smoke_output_is_kept_beside_the_sample(cast, host_env):
    model = _deploy(api_client(cast.owner), "score")
    assert model.status == "Deployed", _log(model)
    assert model.smoke_result == {"input_file": "input.csv", "output_file": "smoke/output.csv"}
    assert (model.folder / model.smoke_result["input_file"]).read_text() == "a,b\n1,2\n"
    assert (model.folder / "smoke" / "output.csv").read_text() == "A,B\n1,2\n"
    assert "Smoke test wrote output.csv (8 bytes), kept as smoke/output.csv." in _log(model)


def test_an_output_in_a_subfolder_is_kept_under_its_name(cast, host_env):
    model = _deploy(api_client(cast.owner), "in_a_subfolder")
    assert model.status == "Deployed", _log(model)
    assert model.smoke_result["output_file"] == "smoke/scores.csv"
    assert (model.folder / "smoke" / "scores.csv").read_text() == "score\n0.5\n"


def test_a_link_to_a_file_in_data_path_keeps_a_copy_of_the_file_not_the_link(cast, host_env):
    model = _deploy(api_client(cast.owner), "through_a_link")
    assert model.status == "Deployed", _log(model)
    kept = model.folder / model.smoke_result["output_file"]
    assert model.smoke_result["output_file"] == "smoke/real.csv"
    assert not kept.is_symlink() and kept.read_text() == "score\n0.25\n"


def test_a_rebuild_replaces_the_kept_output(cast, host_env):
    client = api_client(cast.owner)
    model = _deploy(client, "score")
    (model.folder / "smoke" / "stale.csv").write_text("from an earlier build")
    assert client.post(f"/api/v1/models/{model.hash}/restart").status_code in (200, 202)
    model.refresh_from_db()
    tasks.build_model(model.builds.get(status=ModelBuild.Status.QUEUED).pk)
    model.refresh_from_db()
    assert model.status == "Deployed", _log(model)
    assert sorted(p.name for p in (model.folder / "smoke").iterdir()) == ["output.csv"]


def test_the_kept_output_counts_in_the_groups_storage_and_a_rebuild_replaces_it(cast, host_env):
    """Only the upload was counted, and deleting the model then took the output off too:
    the figure fell below what the group kept."""
    from groups.models import Group
    from groups.uploads import MIN_ENTRY_BYTES, folder_bytes

    client = api_client(cast.owner)
    model = _deploy(client, "score")
    assert model.status == "Deployed", _log(model)
    # What is counted as it comes is what a folder holds, not the folder's own entry (the
    # housekeeping's walk counts that one too).
    counted = folder_bytes(model.folder) - MIN_ENTRY_BYTES
    assert folder_bytes(model.folder / "smoke") > 0
    assert Group.objects.get(pk=cast.group.pk).stored_bytes == counted
    assert client.post(f"/api/v1/models/{model.hash}/restart").status_code in (200, 202)
    tasks.build_model(model.builds.get(status=ModelBuild.Status.QUEUED).pk)
    assert Group.objects.get(pk=cast.group.pk).stored_bytes == counted  # replaced, not counted twice
    assert client.delete(f"/api/v1/models/{model.hash}").status_code in (200, 204)
    assert Group.objects.get(pk=cast.group.pk).stored_bytes == 0
