"""Helpers for the executions tests: a stdlib-only Async model with one entry point per
outcome, an input file, and the call that submits it.

The model's "environment" is a folder whose bin/python is the host's base interpreter
(BASE_PYTHON, under FAKE_FINGERPRINT), so the real runner runs the user code in a real
child process in milliseconds; the `fake_env` and `deploy` fixtures
(tests/executions/conftest.py) set it up.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from rest_framework.test import APIClient

from models_app.models import MLModel
from tests.helpers.uploads import file

FAKE_FINGERPRINT = "e" * 64
BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))

SOURCE = textwrap.dedent(
    """
    import os
    import sys
    import time


    def score(data_path, model_path):
        name = os.environ["inputFileName"]
        with open(os.path.join(data_path, name)) as f:
            lines = f.read().splitlines()
        print("scoring %d rows of %s" % (len(lines) - 1, name))
        print("a warning on stderr", file=sys.stderr)
        checks = [
            name,
            str(os.environ.get("API_KEY") == "s3cr3t-value"),
            str(os.environ["HOME"] == data_path),
            str(os.getcwd() == os.path.realpath(data_path)),
            str(os.path.isfile(os.path.join(model_path, "model.pkl"))),
            str("SECRET_KEY" in os.environ or "NEOMARIL_DATA_DIR" in os.environ),
        ]
        output = os.path.join(data_path, "output.csv")
        with open(output, "w") as f:
            f.write(lines[0] + ",seen_name,api_key_ok,home_ok,cwd_ok,model_path_ok,platform_leak\\n")
            for line in lines[1:]:
                f.write(line + "," + ",".join(checks) + "\\n")
        return output


    def helper(x):
        return 1 / x


    def explode(data_path, model_path):
        print("about to fail")
        return helper(0)


    def returns_none(data_path, model_path):
        return None


    def returns_number(data_path, model_path):
        return 42


    def returns_outside(data_path, model_path):
        return os.path.join(model_path, "app.py")


    def returns_missing(data_path, model_path):
        return os.path.join(data_path, "nothing-here.csv")


    def returns_directory(data_path, model_path):
        os.mkdir(os.path.join(data_path, "sub"))
        return os.path.join(data_path, "sub")


    def returns_input(data_path, model_path):
        return os.path.join(data_path, os.environ["inputFileName"])


    def returns_escaping_symlink(data_path, model_path):
        os.symlink(os.path.join(model_path, "app.py"), os.path.join(data_path, "link.csv"))
        return os.path.join(data_path, "link.csv")


    def returns_relative(data_path, model_path):
        os.makedirs("results")
        with open("results/scores.json", "w") as f:
            f.write('{"ok": true}')
        return "results/scores.json"


    def writes_megabytes(data_path, model_path):
        with open(os.path.join(data_path, os.environ["inputFileName"])) as f:
            megabytes = int(f.read().split()[0])
        output = os.path.join(data_path, "big.bin")
        with open(output, "wb") as f:
            for _ in range(megabytes):
                f.write(b"x" * 1048576)
        return output


    def writes_scratch(data_path, model_path):
        os.makedirs(os.path.join(data_path, "results", "tmp"))
        os.makedirs(os.path.join(data_path, "cache"))
        for name in ("cache/features.bin", "results/tmp/part-0", "results/debug.log", "notes.txt"):
            with open(os.path.join(data_path, name), "w") as f:
                f.write("scratch " * 512)
        os.symlink(os.environ["inputFileName"], os.path.join(data_path, "input-link.csv"))
        with open(os.path.join(data_path, "results", "scores.csv"), "w") as f:
            f.write("score\\n0.5\\n")
        if os.environ["inputFileName"].startswith("fail"):
            raise RuntimeError("failed after writing")
        return os.path.join(data_path, "results", "scores.csv")


    def returns_deep(data_path, model_path):
        folder = os.path.join(data_path, *["d" * 200] * 6)  # 1213 characters with the file: Linux allows 4096
        os.makedirs(folder)
        with open(os.path.join(folder, "out.csv"), "w") as f:
            f.write("x\\n")
        return os.path.join(folder, "out.csv")


    def rewrites_input(data_path, model_path):
        path = os.path.join(data_path, os.environ["inputFileName"])
        tried = []
        for attempt in (
            lambda: open(path, "w").write("changed by the model\\n"),
            lambda: os.remove(path),
            lambda: os.rename(path, path + ".moved"),
            lambda: os.chmod(path, 0o600),
        ):
            try:
                attempt()
                tried.append("done")
            except OSError as exc:
                tried.append(type(exc).__name__)
        with open(os.path.join(data_path, "tried.txt"), "w") as f:
            f.write(",".join(tried))
        return "tried.txt"


    def sleeps(data_path, model_path):
        print("sleeping", flush=True)
        time.sleep(120)
        return os.path.join(data_path, os.environ["inputFileName"])


    def chatty(data_path, model_path):
        for i in range(5000):
            print("line %d %s" % (i, "x" * 100))
        output = os.path.join(data_path, "out.txt")
        with open(output, "w") as f:
            f.write("done")
        return output
    """
)

CSV = "radius,texture\n14.1,19.3\n20.5,25.1\n"


def submit(
    client: APIClient, model: MLModel, name: str = "input.csv", content: str | bytes = CSV, field="file"
):
    return client.post(f"/api/v1/run/{model.hash}", {field: file(name, content)}, format="multipart")
