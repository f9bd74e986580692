"""Every upload form, not only a model's first upload, names a file part Django's parser
dropped (here: a file name that is not UTF-8) at its field, instead of asking for the
file as if it had not been sent (groups.uploads.lost_parts, UploadCheckingForm)."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.monitors import deployed_model, reference_run
from tests.helpers.training import make_experiment

BOUNDARY = "lOsT-pArTs-b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(fields: dict[str, str], files: dict[str, tuple[bytes, bytes]]) -> bytes:
    out = b""
    for name, value in fields.items():
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, (file_name, content) in files.items():
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="'.encode()
        out += file_name + b'"\r\n\r\n' + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def not_utf8(field: str, shown: str) -> str:
    return (
        f"The file name of the part '{field}' is not valid UTF-8 ('{shown}'), so the file could not be "
        "read: send the name in UTF-8, or rename the file."
    )


def test_a_training_run(cast):
    experiment = make_experiment(cast.group, cast.owner)
    data = multipart(
        {
            "run_name": "lost",
            "training_type": "Custom",
            "python_version": "3.11",
            "training_reference": "train_model",
        },
        {
            "train_data": (b"\xe9.csv", b"a,b\n1,2\n"),
            "source": (b"train.py", b"def train_model(df, p): ...\n"),
        },
    )
    response = api_client(cast.owner).post(
        f"/api/v1/training/experiments/{experiment.hash}/runs", data, content_type=CONTENT_TYPE
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["train_data"] == [not_utf8("train_data", "\\xe9.csv")]


def test_a_monitoring_registration(cast):
    model = deployed_model(cast.group, reference_run(cast.group))
    data = multipart(
        {"preprocess_reference": "parse"},
        {"preprocess": (b"\xff.py", b"def parse(i, o): ...\n"), "configuration": (b"c.json", b"{}")},
    )
    response = api_client(cast.owner).post(
        f"/api/v1/monitoring/{model.hash}", data, content_type=CONTENT_TYPE
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["preprocess"] == [not_utf8("preprocess", "\\xff.py")]


@pytest.mark.parametrize("page", [False, True], ids=["api", "page"])
def test_a_new_version(cast, page):
    model = deployed_model(cast.group)
    data = multipart(
        {"model_reference": "score"},
        {"source": (b"\xe9.py", b"def score(data, base_path): ...\n"), "model": (b"model.pkl", b"x")},
    )
    if page:
        client = Client()
        assert client.login(username=cast.owner.username, password=PASSWORD)
        response = client.post(
            f"/models/{model.hash}/versions/new/",
            data,
            content_type=CONTENT_TYPE,
            HTTP_X_REQUESTED_WITH="XMLHttpRequest",
        )
    else:
        response = api_client(cast.owner).post(
            f"/api/v1/models/{model.hash}/versions", data, content_type=CONTENT_TYPE
        )
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["source"] == [not_utf8("source", "\\xe9.py")]
