"""The README's tour, run as written against the real processes (`make run`).

The tour's shell block is read from README.md and its steps 1-8 and 11 run one command at a
time in bash, in a folder holding the files the tour names (app.py and the Async app.py
are the README's own; model.pkl is trained on the `x`, `y` its app.py reads). Only what
the README itself marks as placeholders is filled in: `URL`, the `M…` hash and the
execution number from the previous answer, `$NEOMARIL_GROUP_TOKEN` (the group token the
answers gave, as step 2 says to store it); the admin's password is the tour's own.
Between commands the test waits where the tour says to wait (a build, an execution),
and `open <page>` is a browser opening the page, here a logged-in HTTP client.
Steps 9-10 (training, monitoring) have end-to-end tests of their own
(tests/training/test_e2e.py, tests/monitors/test_e2e.py) and are not run here.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.helpers.processes import RunningPortal
from tests.helpers.real_models import REQUIREMENTS, train_model_pickle

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
PASSWORD = "choose-a-password"  # the tour's

TRAIN_XY = """
import pickle, sys
from sklearn.linear_model import LogisticRegression
X = [[0, 0], [1, 2], [2, 1], [3, 3], [10, 10], [11, 12], [12, 11], [13, 13]]
model = LogisticRegression().fit(X, [0, 0, 0, 0, 1, 1, 1, 1])
with open(sys.argv[1], "wb") as f:
    pickle.dump(model, f)
"""


def tour() -> tuple[str, dict[int, list[tuple[str, list[str]]]]]:
    """The tour's preamble (URL=…) and, per step, its commands with the comments after each."""
    text = README.read_text()
    block = re.search(r"## A short tour.*?```bash\n(.*?)```", text, re.S).group(1)
    preamble, steps, current = [], {}, None
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"# (\d+)\. ", line)
        if heading:
            current = int(heading.group(1))
            steps[current] = []
        elif line.startswith("#"):
            if current is not None and steps[current]:
                steps[current][-1][1].append(line)
        elif line.strip():
            command = line
            while command.endswith("\\"):
                i += 1
                command += "\n" + lines[i]
            if current is None:
                preamble.append(command)
            else:
                steps[current].append((command, []))
        i += 1
    return "\n".join(preamble), steps


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


class Shell:
    """Runs the tour's commands in bash, in `folder`, with the variables the tour sets."""

    def __init__(self, folder: Path, preamble: str):
        self.folder = folder
        self.preamble = preamble
        self.vars: dict[str, str] = {}
        self.model_hash = ""
        self.execution = ""

    def fill(self, command: str) -> str:
        if self.model_hash:
            command = command.replace("M…", self.model_hash)
        if self.execution:
            command = command.replace("/executions/5/", f"/executions/{self.execution}/")
        return command

    def run(self, command: str, folder: Path | None = None, capture: str = "") -> str:
        exports = "".join(f"export {k}='{v}'\n" for k, v in self.vars.items())
        script = f"set -e\n{self.preamble}\n{exports}{self.fill(command)}\n{capture}"
        done = subprocess.run(
            ["bash", "-c", script], cwd=folder or self.folder, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{command}\n-> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout


def write_files(folder: Path, score_source: str, model: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(score_source)
    (folder / "model.pkl").write_bytes(model.read_bytes())
    (folder / "requirements.txt").write_text(REQUIREMENTS)
    (folder / "schema.json").write_text(json.dumps({"x": 1.0, "y": 2.0}))
    (folder / ".env").write_text("GREETING=hello\n")
    (folder / "input.csv").write_text("x,y\n1,2\n12,11\n")


def wait_status(shell: Shell, command: str, wanted: set[str], timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        answer = json.loads(shell.run(command))
        if answer["status"] in wanted or time.monotonic() > deadline:
            return answer
        time.sleep(1)


def browser_session(url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{url}/login/", timeout=10)
    session.post(
        f"{url}/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{url}/login/"},
        timeout=10,
    ).raise_for_status()
    return session


def test_the_readme_tour_works_as_written(tmp_path):
    preamble, steps = tour()
    assert sorted(steps) == list(range(1, 12)), "the tour's steps are numbered 1 to 11"
    assert preamble.startswith("URL=http://127.0.0.1:8000")
    sync_source, async_source = python_blocks()[:2]
    assert "def score(data, base_path)" in sync_source and "def score(data_path, model_path)" in async_source
    model = train_model_pickle(tmp_path / "trained", TRAIN_XY)
    work = tmp_path / "tour"
    write_files(work, sync_source, model)
    write_files(work / "async", async_source, model)

    portal = RunningPortal(tmp_path / "data", admin=("admin", PASSWORD))
    try:
        portal.wait_healthy()
        shell = Shell(work, preamble.replace("http://127.0.0.1:8000", portal.url))

        # 1. Log in.
        [(login, _)] = steps[1]
        shell.vars["TOKEN"] = shell.run(login, capture='printf %s "$TOKEN"')
        assert shell.vars["TOKEN"].startswith("nmu_")

        # 2. Create a group; its token is in the answer ("store it now").
        [(create_group, comments)] = steps[2]
        assert '"group_token": "nmg_…"' in comments[0]
        group = json.loads(shell.run(create_group))
        assert group["name"] == "datarisk" and group["description"] == "Risk models"
        shell.vars["NEOMARIL_GROUP_TOKEN"] = group["group_token"]

        # 3. Create ana, add her, replace the token.
        (create_user, comments), (add_member, _), (refresh, _) = steps[3]
        assert '"set_password_url"' in comments[0]
        ana = json.loads(shell.run(create_user))
        assert ana["username"] == "ana" and ana["email"] == "ana@example.com" and ana["is_active"]
        assert ana["set_password_url"].startswith(f"{portal.url}/account/set-password/")
        member = json.loads(shell.run(add_member))
        assert member["username"] == "ana" and member["role"] == "member", member
        replaced = json.loads(shell.run(refresh))
        assert replaced["refreshed"] is True and replaced["group_token"].startswith("nmg_")
        shell.vars["NEOMARIL_GROUP_TOKEN"] = replaced["group_token"]
        # ana sets her password through her link and logs in.
        link = requests.Session()
        form = link.get(ana["set_password_url"], timeout=10)
        assert form.status_code == 200 and "Set your password" in form.text, form.text
        done = link.post(
            form.url,
            data={
                "new_password1": "anas-own-password-42",
                "new_password2": "anas-own-password-42",
                "csrfmiddlewaretoken": link.cookies["csrftoken"],
            },
            headers={"Referer": form.url},
            timeout=10,
        )
        assert done.url == f"{portal.url}/login/" and "Your password is set" in done.text
        browser_session(portal.url, "ana", "anas-own-password-42")

        # 4. Deploy a model.
        [(deploy, comments)] = steps[4]
        assert '"status": "Ready"' in comments[0]
        created = json.loads(shell.run(deploy))
        assert created["hash"].startswith("M") and created["status"] == "Ready", created
        shell.model_hash = created["hash"]

        # 5. Follow the build.
        (status, _), (logs, _) = steps[5]
        final = wait_status(shell, status, {"Deployed", "Failed"})
        log = json.loads(shell.run(logs))["log"]
        assert final["status"] == "Deployed", log
        assert "Smoke test" in log

        # 6. Call it with the group token.
        [(call, comments)] = steps[6]
        assert comments == ['# -> {"pred": 0}']
        assert json.loads(shell.run(call)) == {"pred": 0}

        # 7. An Async model: step 4 with operation=Async and the Async app.py.
        assert "-F operation=Sync" in deploy
        async_model = json.loads(
            shell.run(deploy.replace("operation=Sync", "operation=Async"), work / "async")
        )
        shell.model_hash = async_model["hash"]
        assert wait_status(shell, status, {"Deployed", "Failed"})["status"] == "Deployed", shell.run(logs)
        (submit, comments), (result, _) = steps[7]
        assert '202 {"execution_id": 5, "status": "Requested"' in comments[0]
        submitted = json.loads(shell.run(submit))
        assert submitted["status"] == "Requested" and submitted["url"].endswith(
            f"/api/v1/run/{shell.model_hash}/executions/{submitted['execution_id']}"
        )
        shell.execution = str(submitted["execution_id"])
        follow = f'curl -s {submitted["url"]} -H "Authorization: Bearer $NEOMARIL_GROUP_TOKEN"'
        assert wait_status(shell, follow, {"Succeeded", "Failed"})["status"] == "Succeeded"
        shell.run(result)
        assert (work / "output.csv").read_text().splitlines() == ["x,y,pred", "1,2,1", "12,11,1"]

        # 8. The model's own OpenAPI page (a browser opens it) and request code.
        (open_page, _), (code, _) = steps[8]
        shell.model_hash = created["hash"]
        assert open_page.startswith("open $URL/models/M…/docs/")
        page_url = shell.fill(open_page.split()[1]).replace("$URL", portal.url)
        docs = browser_session(portal.url, "admin", PASSWORD).get(page_url, timeout=10)
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        generated = json.loads(shell.run(code))
        assert f"/api/v1/run/{shell.model_hash}" in generated["python"]

        # 11. Update the Sync model: version 2 goes live, then roll back to version 1.
        (add_version, comments), (version_status, _), (rollback, _) = steps[11]
        assert '"version": 2, "live": false' in comments[0]
        version = json.loads(shell.run(add_version))
        assert (version["model"], version["version"], version["live"]) == (shell.model_hash, 2, False), (
            version
        )
        assert version["env_names"] == ["GREETING"]  # kept from version 1
        assert wait_status(shell, version_status, {"Deployed", "Failed"})["status"] == "Deployed"
        model_status = json.loads(shell.run(status))
        assert (model_status["version"], model_status["status"]) == (2, "Deployed")
        assert json.loads(shell.run(call)) == {"pred": 0}  # the same run URL, version 2 answering
        rolled = json.loads(shell.run(rollback))
        assert (rolled["version"], rolled["live"]) == (1, True)
        assert json.loads(shell.run(status))["version"] == 1
    finally:
        portal.stop()
