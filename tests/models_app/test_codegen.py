"""The generated request code, run as a user would run it (curl in bash, Python, Node.js)
against a loopback server that keeps what it received: each must send the model's
example exactly, whatever its keys and numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from models_app import codegen

ODD = {
    "__proto__": {"polluted": True},
    "constructor": 1,
    "big": 123456789012345678901234567890,
    "past 2**53": 9007199254740993,
    "tiny": 1e-300,
    'it\'s `quoted` ${HOME} $(id) \\ "x"': "line\nbreak\ttab",
    "unicode é ☃ \u2028": [None, True, {}, []],
    "": "empty key",
}


class _Recorder(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):  # noqa: N802  (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(body)
        answer = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Recorder.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api/v1/run/Mabc"
    httpd.shutdown()
    httpd.server_close()


def _sync_model(example) -> SimpleNamespace:
    return SimpleNamespace(is_sync=True, schema=example)


def _run(language: str, code: str, folder: Path) -> None:
    if language == "curl":
        (folder / "call.sh").write_text(code)  # as a file: a large example is over one argument's limit
        command = ["bash", "call.sh"]
    elif language == "python":
        (folder / "call.py").write_text(code)
        command = [sys.executable, "call.py"]
    else:
        node = shutil.which("node")
        assert node, "Node.js (Debian's nodejs) is needed to run the generated JavaScript"
        (folder / "call.mjs").write_text(code)
        command = [node, "call.mjs"]
    done = subprocess.run(
        command,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NEOMARIL_GROUP_TOKEN": "nmg_test", "HOME": str(folder)},
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("language", codegen.LANGUAGES)
def test_the_code_sends_the_example_exactly(server, tmp_path, language):
    _run(language, codegen.generate(_sync_model(ODD), server, language), tmp_path)
    (received,) = _Recorder.received
    # Parsed with Python's json, which keeps big integers and "__proto__" as they are.
    assert json.loads(received) == ODD


@pytest.mark.parametrize("language", ["curl", "javascript"])
def test_curl_and_javascript_send_the_example_text_itself(server, tmp_path, language):
    _run(language, codegen.generate(_sync_model(ODD), server, language), tmp_path)
    assert _Recorder.received[0].decode() == json.dumps(ODD, indent=2)


def test_an_example_too_large_for_one_argument_goes_to_curl_on_its_input(server, tmp_path):
    large = {f"feature_{i}": "x" * 100 for i in range(1500)}  # about 170 KB: over Linux's 128 KiB
    code = codegen.generate(_sync_model(large), server, "curl")
    assert f"--data-binary @- <<'{codegen.HEREDOC_END}'" in code
    _run("curl", code, tmp_path)
    assert json.loads(_Recorder.received[0]) == large


def test_a_small_example_stays_on_curls_command_line(server):
    assert "--data '{" in codegen.generate(_sync_model({"a": 1}), server, "curl")


class _Executions(BaseHTTPRequestHandler):
    """The run URL of an Async model whose result lies in a subfolder of its execution."""

    def _answer(self, body: bytes, kind: str = "application/json"):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        status_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/run/Mabc/executions/1"
        self._answer(json.dumps({"url": status_url, "status": "Requested"}).encode())

    def do_GET(self):  # noqa: N802
        if self.path.endswith("/result"):
            self._answer(b"a,b,pred\n1,2,1\n", "text/csv")
        else:
            self._answer(json.dumps({"status": "Succeeded", "output_file": "out/day1/result.csv"}).encode())

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_async_code_saves_a_result_from_a_subfolder_under_its_own_name(tmp_path, language):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Executions)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/api/v1/run/Mabc"
        (tmp_path / "input.csv").write_text("a,b\n1,2\n")
        code = codegen.generate(SimpleNamespace(is_sync=False, input_type="csv"), url, language)
        _run(language, code, tmp_path)
    finally:
        httpd.shutdown()
        httpd.server_close()
    # Here, under the result's own name: the model's subfolder does not exist here.
    assert (tmp_path / "result.csv").read_text() == "a,b,pred\n1,2,1\n"
