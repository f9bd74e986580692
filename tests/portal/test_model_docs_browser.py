"""A model's Swagger page in a real headless Chromium: "Try it out" calls the real model,
and the generated request code runs against the live server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import requests

from tests.helpers.browser import screenshot
from tests.helpers.processes import PortalClient, RunningPortal

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SOURCE = textwrap.dedent(
    """
    import json, os

    def score(data, base_path):
        d = json.loads(data)
        return {"double": d["x"] * 2, "label": d["name"].upper()}
    """
)
ASYNC_SOURCE = textwrap.dedent(
    """
    import os

    def score(data_path, model_path):
        text = open(os.path.join(data_path, os.environ["inputFileName"])).read()
        out = os.path.join(data_path, "output.csv")
        open(out, "w").write(text.strip() + ",scored\\n")
        return out
    """
)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    portal = RunningPortal(tmp_path_factory.mktemp("docs"))
    try:
        portal.wait_healthy()
        client = PortalClient(portal)
        token = client.create_group("docs")
        files = {
            "source": ("app.py", SOURCE.encode()),
            "model": ("model.pkl", b"unused"),
            "requirements": ("requirements.txt", b""),
            "schema": ("schema.json", json.dumps({"x": 21, "name": "ana"}).encode()),
        }
        sync_hash = client.deploy(group="docs", files=files, name="doubler")
        files = {
            "source": ("app.py", ASYNC_SOURCE.encode()),
            "model": ("model.pkl", b"unused"),
            "requirements": ("requirements.txt", b""),
        }
        async_hash = client.deploy(group="docs", files=files, name="batch", operation="Async")
        yield {"portal": portal, "client": client, "token": token, "sync": sync_hash, "async": async_hash}
    finally:
        portal.stop()


def _run(command: list[str], token: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "NEOMARIL_GROUP_TOKEN": token}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_generated_sync_code_runs(live, tmp_path):
    code = live["client"].get(f"/api/v1/models/{live['sync']}/code").json()
    curl = _run(["bash", "-c", code["curl"]], live["token"], tmp_path)
    assert json.loads(curl.stdout) == {"double": 42, "label": "ANA"}, curl.stderr
    (tmp_path / "call.py").write_text(code["python"])
    python = _run([sys.executable, "call.py"], live["token"], tmp_path)
    assert python.stdout.strip() == "{'double': 42, 'label': 'ANA'}", python.stderr
    node = shutil.which("node")
    assert node, "node is needed to run the generated JavaScript"
    (tmp_path / "call.mjs").write_text(code["javascript"])
    js = _run([node, "call.mjs"], live["token"], tmp_path)
    assert json.loads(js.stdout) == {"double": 42, "label": "ANA"}, js.stderr  # the answer's text, as sent


def test_generated_async_code_runs(live, tmp_path):
    code = live["client"].get(f"/api/v1/models/{live['async']}/code").json()
    (tmp_path / "input.csv").write_text("a,b\n1,2\n")
    started = _run(["bash", "-c", code["curl"]], live["token"], tmp_path)
    assert json.loads(started.stdout)["status"] == "Requested", started.stderr
    (tmp_path / "call.py").write_text(code["python"])
    python = _run([sys.executable, "call.py"], live["token"], tmp_path)
    assert "saved output.csv" in python.stdout, python.stdout + python.stderr
    assert (tmp_path / "output.csv").read_text() == "a,b\n1,2,scored\n"


def _login(page, portal):
    page.goto(f"{portal.url}/login/")
    page.fill("#id_username", portal.admin[0])
    page.fill("#id_password", portal.admin[1])
    page.click("main button[type=submit]")  # not the language switch in the top bar
    page.wait_for_url(f"{portal.url}/")


def test_swagger_try_it_out_calls_the_real_model(live, page):
    portal = live["portal"]
    offsite = []
    page.on(
        "request",
        lambda r: (
            offsite.append(r.url)
            if not r.url.startswith(portal.url) and not r.url.startswith("data:")
            else None
        ),
    )
    _login(page, portal)
    page.goto(f"{portal.url}/models/{live['sync']}/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "doubler" in page.inner_text(".swagger-ui .info .title")
    page.click(".btn.authorize")
    page.fill(".auth-container input", live["token"])
    page.click(".auth-btn-wrapper .btn.modal-btn.auth.authorize")
    page.click(".btn-done")
    page.click("#operations-model-predict .opblock-summary")
    page.click("#operations-model-predict .try-out__btn")
    page.click("#operations-model-predict .execute")
    body = page.wait_for_selector(
        "#operations-model-predict .live-responses-table .response-col_description pre"
    )
    assert json.loads(body.inner_text()) == {"double": 42, "label": "ANA"}
    status = page.inner_text("#operations-model-predict .live-responses-table .response .response-col_status")
    assert status.strip().startswith("200")
    screenshot(page, "model-swagger-try-it-out")
    assert offsite == [], f"the page fetched from outside the portal: {offsite}"


def test_swagger_page_needs_membership(live, page):
    portal = live["portal"]
    client = live["client"]
    other = requests.post(
        f"{portal.url}/api/v1/groups", json={"name": "strangers"}, headers=client.headers, timeout=10
    )
    assert other.status_code == 201
    page.goto(f"{portal.url}/models/{live['sync']}/docs/")
    assert "/login/" in page.url  # anonymous visitors are sent to log in


@pytest.mark.parametrize("model", ["sync", "async"])
def test_swagger_page_fits_a_phone_and_leads_back_to_the_model(live, page, model):
    """Swagger UI's info block kept its document link on one line: 6-19 px of sideways
    scroll at 375 px, the link cut off; and the page had no way back into the portal."""
    portal = live["portal"]
    _login(page, portal)
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{portal.url}/models/{live[model]}/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{overflow} px of sideways scroll"
    page.click("#back-to-model")
    page.wait_for_url(f"{portal.url}/models/{live[model]}/")
