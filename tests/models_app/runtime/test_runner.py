"""runner.py in oneshot mode, driven through ``run_oneshot``, under every supported Python."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from models_app.runtime import oneshot
from models_app.runtime.oneshot import RunResult, run_oneshot
from models_app.runtime.sandbox import RUNNER_PATH, Limits, UserCode, build_runner_env
from tests.helpers.interpreters import SUPPORTED_MINORS, supported_interpreter


def run(
    python: Path,
    source: Path,
    *,
    entrypoint: str = "score",
    kind: str = "sync",
    args: list[str] | None = None,
    timeout: float = 30,
    extra_env: dict[str, str] | None = None,
    memory_limit_mb: int = 0,
    **kwargs,
) -> RunResult:
    if args is None:
        args = ['{"x": 1}', str(source.parent)]
    writable = Path(args[0]) if kind == "async" else None  # an execution's own folder
    code = UserCode(
        python=python,
        env=extra_env or {},
        cwd=writable or source.parent,
        read_only=(source.parent,),
        writable=writable,
        limits=Limits(memory_mb=memory_limit_mb, names={"memory": "NEOMARIL_TEST_MEMORY"}),
    )
    return run_oneshot(
        code, source=str(source), entrypoint=entrypoint, kind=kind, args=args, timeout=timeout, **kwargs
    )


def first_file_line(tb: str) -> str:
    return next(line for line in tb.splitlines() if line.lstrip().startswith("File "))


# ------------------------------------------------------------------------ sync results


def test_sync_dict_result(runner_python, write_user_module):
    source = write_user_module(
        """
        import json
        def score(data, base_path):
            return {"echo": json.loads(data), "base": base_path, "ok": True, "n": None, "f": 1.5}
        """
    )
    result = run(runner_python, source)
    assert result.ok, result
    assert result.result == {"echo": {"x": 1}, "base": str(source.parent), "ok": True, "n": None, "f": 1.5}
    assert result.returncode == 0
    assert result.phase is None and result.error is None
    assert result.duration > 0


def test_sync_json_string_result(runner_python, write_user_module):
    source = write_user_module(
        """
        def score(data, base_path):
            return '{"a": [1, 2, NaN], "b": "text"}'
        """
    )
    result = run(runner_python, source)
    assert result.ok, result
    assert result.result == {"a": [1, 2, None], "b": "text"}


def test_sync_non_json_string_is_a_result_error(runner_python, write_user_module):
    source = write_user_module(
        """
        def score(data, base_path):
            return "hello"
        """
    )
    result = run(runner_python, source)
    assert not result.ok
    assert result.phase == "result"
    assert result.error.startswith("the entrypoint returned a string that is not valid JSON: ")
    # ... and says how to answer a word.
    assert result.error.endswith(
        'return a dict or a list instead (such as {"result": "hello"}), or json.dumps(text) to answer '
        "the text as a JSON string"
    )


def test_exception_traceback_starts_in_user_code(runner_python, write_user_module):
    source = write_user_module(
        """
        def helper(x):
            return 1 / x

        def score(data, base_path):
            return helper(0)
        """
    )
    result = run(runner_python, source)
    assert not result.ok
    assert result.phase == "call"
    assert result.error == "ZeroDivisionError: division by zero"
    assert result.traceback.startswith("Traceback (most recent call last):")
    # Paths are relative to the model's folder: callers holding a token don't see the server's.
    assert first_file_line(result.traceback).strip() == f'File "{source.name}", line 6, in score'
    assert f'File "{source.name}", line 3, in helper' in result.traceback
    assert "runner.py" not in result.traceback and str(source.parent) not in result.traceback


def test_exception_in_module_body_is_an_import_error(runner_python, write_user_module):
    source = write_user_module(
        """
        import os
        raise RuntimeError("no model file")
        """
    )
    result = run(runner_python, source)
    assert not result.ok
    assert result.phase == "import"
    assert result.error == "RuntimeError: no model file"
    assert first_file_line(result.traceback).strip() == f'File "{source.name}", line 3, in <module>'
    assert "runner.py" not in result.traceback
    assert "importlib" not in result.traceback


def test_missing_dependency_is_an_import_error(runner_python, write_user_module):
    source = write_user_module("import surely_not_installed_pkg\n")
    result = run(runner_python, source)
    assert result.phase == "import"
    assert result.error == "ModuleNotFoundError: No module named 'surely_not_installed_pkg'"
    assert f'File "{source.name}", line 1' in result.traceback


def test_syntax_error_is_an_import_error(runner_python, write_user_module):
    source = write_user_module("def score(data, base_path)\n    return {}\n")
    result = run(runner_python, source)
    assert result.phase == "import"
    assert result.error.startswith("SyntaxError: ")
    assert f'File "{source.name}"' in result.traceback and str(source) not in result.traceback
    assert "runner.py" not in result.traceback


def test_a_file_named_like_a_loaded_module_is_refused(runner_python, write_user_module):
    source = write_user_module("def score(d, b):\n    return {}\n", name="json.py")
    result = run(runner_python, source)
    assert result.phase == "import"
    assert "has the name of the module 'json'" in result.error


def test_missing_entrypoint(runner_python, write_user_module):
    source = write_user_module(
        """
        def predict(data, base_path):
            return {}
        """
    )
    result = run(runner_python, source, entrypoint="score")
    assert not result.ok
    assert result.phase == "import"
    assert "'score' not found" in result.error
    assert "functions defined there: predict" in result.error


def test_check_imports_and_finds_entrypoint_without_calling_it(runner_python, write_user_module):
    source = write_user_module("print('imported')\ndef score(d, b):\n    raise RuntimeError('called')\n")
    result = run(runner_python, source, kind="check", args=[])
    assert result.ok and result.result is None
    assert "imported" in result.output
    broken = write_user_module(
        "import not_installed_anywhere\ndef score(d, b):\n    return {}\n", name="broken.py"
    )
    result = run(runner_python, broken, kind="check", args=[])
    assert result.phase == "import" and "not_installed_anywhere" in result.error


def test_non_callable_entrypoint(runner_python, write_user_module):
    source = write_user_module("score = 42\n")
    result = run(runner_python, source)
    assert result.phase == "import"
    assert "non-callable attribute 'score'" in result.error


def test_tracebacks_and_messages_hide_the_servers_folders(runner_python, write_user_module):
    # A 422 reaches any token holder: paths under the model's folder are relative, the
    # environment's library (json here, under the interpreter's prefix) is <python>/ or <env>/.
    source = write_user_module(
        """
        import json
        import os

        def score(data, base_path):
            if "open" in data:
                return open(os.path.join(base_path, "missing.csv")).read()
            return json.loads("{not json")
        """
    )
    result = run(runner_python, source)
    assert result.phase == "call" and result.error.startswith("JSONDecodeError: ")
    files = [line.strip() for line in result.traceback.splitlines() if line.lstrip().startswith("File ")]
    assert files[0] == f'File "{source.name}", line 8, in score'
    library = [line for line in files[1:] if "json" in line]
    assert library and all(line.startswith(('File "<python>/', 'File "<env>/')) for line in library), files
    assert not any(line.startswith('File "/') for line in files), files
    opened = run(runner_python, source, args=['"open"', str(source.parent)])
    assert opened.error == "FileNotFoundError: [Errno 2] No such file or directory: 'missing.csv'"
    assert str(source.parent) not in opened.traceback and "'missing.csv'" in opened.traceback


def test_missing_source_file(runner_python, user_dir):
    result = run(runner_python, user_dir / "nope.py")
    assert result.phase == "import"
    assert "does not exist" in result.error


def test_prints_do_not_corrupt_the_frame(runner_python, write_user_module):
    source = write_user_module(
        """
        import sys
        print("imported")
        def score(data, base_path):
            for i in range(10000):
                print("line", i)
            sys.stdout.write("no newline at the end")
            return {"done": True}
        """
    )
    lines: list[str] = []
    result = run(runner_python, source, on_output_line=lines.append)
    assert result.ok, result
    assert result.result == {"done": True}
    assert lines[0] == "imported"
    assert lines[1:10001] == [f"line {i}" for i in range(10000)]
    assert lines[-1] == "no newline at the end"
    assert result.output.startswith("imported\nline 0\nline 1\n")
    assert result.output.endswith("line 9999\nno newline at the end")


def test_c_level_writes_to_fd1_do_not_corrupt_the_frame(runner_python, write_user_module):
    source = write_user_module(
        """
        import os, subprocess, sys
        def score(data, base_path):
            os.write(1, b"x" * 100 + b"\\n")
            sys.__stdout__.write("dunder stdout\\n")
            sys.__stdout__.flush()
            subprocess.run(["echo", "from a child"], check=True)
            os.write(2, b"to stderr\\n")
            return [1]
        """
    )
    result = run(runner_python, source)
    assert result.ok, result
    assert result.result == [1]
    assert "x" * 100 in result.output
    assert "dunder stdout" in result.output
    assert "from a child" in result.output
    assert "to stderr" in result.output


def test_non_finite_floats_become_null(runner_python, write_user_module):
    source = write_user_module(
        """
        def score(data, base_path):
            return {"nan": float("nan"), "inf": float("inf"), "ninf": -float("inf"), "ok": 2.5}
        """
    )
    result = run(runner_python, source)
    assert result.ok, result
    assert result.result == {"nan": None, "inf": None, "ninf": None, "ok": 2.5}


def test_nested_conversions(runner_python, write_user_module):
    source = write_user_module(
        """
        import datetime, decimal, enum

        class Level(enum.IntEnum):
            HIGH = 3

        def score(data, base_path):
            return {
                "tuple": (1, (2, 3)),
                "set": {3, 1, 2},
                "frozen": frozenset(["b", "a"]),
                "when": datetime.datetime(2024, 5, 17, 8, 30, 0),
                "day": datetime.date(2024, 5, 17),
                "at": datetime.time(8, 30),
                "price": decimal.Decimal("12.50"),
                "bad_price": decimal.Decimal("NaN"),
                "level": Level.HIGH,
                1: "int key",
                2.5: "float key",
                None: "none key",
                ("a", 1): "tuple key",
                "nested": [{"t": (decimal.Decimal("0.5"),)}],
            }
        """
    )
    result = run(runner_python, source)
    assert result.ok, result
    assert result.result == {
        "tuple": [1, [2, 3]],
        "set": [1, 2, 3],
        "frozen": ["a", "b"],
        "when": "2024-05-17T08:30:00",
        "day": "2024-05-17",
        "at": "08:30:00",
        "price": 12.5,
        "bad_price": None,
        "level": 3,
        "1": "int key",
        "2.5": "float key",
        "null": "none key",
        "('a', 1)": "tuple key",
        "nested": [{"t": [0.5]}],
    }


def test_non_serialisable_value_names_its_path(runner_python, write_user_module):
    source = write_user_module(
        """
        class Thing:
            pass

        def score(data, base_path):
            return {"x": [1, 2, Thing()]}
        """
    )
    result = run(runner_python, source)
    assert not result.ok
    assert result.phase == "result"
    assert 'result["x"][2]' in result.error
    assert "app.Thing" in result.error


def test_bytes_are_refused(runner_python, write_user_module):
    source = write_user_module(
        """
        def score(data, base_path):
            return {"blob": b"abc"}
        """
    )
    result = run(runner_python, source)
    assert result.phase == "result"
    assert 'bytes at result["blob"]' in result.error


def test_circular_result_is_an_error(runner_python, write_user_module):
    source = write_user_module(
        """
        def score(data, base_path):
            a = []
            a.append(a)
            return {"a": a}
        """
    )
    result = run(runner_python, source)
    assert result.phase == "result"
    assert 'circular reference at result["a"][0]' in result.error


def test_pickles_can_reference_the_user_module(runner_python, write_user_module):
    source = write_user_module(
        """
        import pickle

        class Model:
            def predict(self):
                return 7

        def score(data, base_path):
            model = pickle.loads(pickle.dumps(Model()))
            return {"module": type(model).__module__, "value": model.predict()}
        """
    )
    result = run(runner_python, source)
    assert result.ok, result
    assert result.result == {"module": "app", "value": 7}


def test_extra_module_beside_the_source_imports(runner_python, write_user_module):
    write_user_module("FACTOR = 6\n", name="utils.py")
    source = write_user_module(
        """
        from utils import FACTOR
        def score(data, base_path):
            return {"answer": FACTOR * 7}
        """
    )
    result = run(runner_python, source)
    assert result.ok, result
    assert result.result == {"answer": 42}


def test_platform_modules_are_not_importable(runner_python, write_user_module):
    # runner.py's own folder must not leak onto the user's sys.path.
    source = write_user_module(
        """
        import importlib.util, sys
        def score(data, base_path):
            return {"protocol": importlib.util.find_spec("protocol") is not None,
                    "oneshot": importlib.util.find_spec("oneshot") is not None}
        """
    )
    result = run(runner_python, source)
    assert result.ok, result
    assert result.result == {"protocol": False, "oneshot": False}


def test_user_exit_is_reported_with_its_traceback(runner_python, write_user_module):
    source = write_user_module(
        """
        import sys
        def score(data, base_path):
            sys.exit(4)
        """
    )
    result = run(runner_python, source)
    assert not result.ok
    assert result.phase == "call"
    assert result.error == "SystemExit: 4"
    assert f'File "{source.name}", line 4, in score' in result.traceback


def test_a_keyboard_interrupt_the_users_code_raises_is_its_error_not_a_crash(
    runner_python, write_user_module
):
    """It was re-raised: the process died "killed by SIGINT", with the server's paths in
    an unshortened traceback (and a Sync call was sent again, running the model twice)."""
    source = write_user_module(
        """
        def score(data, base_path):
            raise KeyboardInterrupt("stop")
        """
    )
    result = run(runner_python, source)
    assert not result.ok
    assert (result.phase, result.error) == ("call", "KeyboardInterrupt: stop")
    assert f'File "{source.name}", line 3, in score' in result.traceback


# ------------------------------------------------------------------------ async results


def test_async_returns_the_path(runner_python, write_user_module, user_dir):
    source = write_user_module(
        """
        import os
        def score(data_path, model_path):
            out = os.path.join(data_path, "out.csv")
            with open(out, "w") as f:
                f.write(os.environ["inputFileName"])
            return out
        """
    )
    data_dir = user_dir / "exec"
    data_dir.mkdir()
    result = run(
        runner_python,
        source,
        kind="async",
        args=[str(data_dir), str(user_dir)],
        extra_env={"inputFileName": "input.csv"},
    )
    assert result.ok, result
    assert result.result == str(data_dir / "out.csv")
    assert (data_dir / "out.csv").read_text() == "input.csv"


def test_async_may_return_a_pathlike(runner_python, write_user_module, user_dir):
    source = write_user_module(
        """
        import pathlib
        def score(data_path, model_path):
            return pathlib.Path(data_path) / "out.json"
        """
    )
    result = run(runner_python, source, kind="async", args=[str(user_dir), str(user_dir)])
    assert result.ok, result
    assert result.result == str(user_dir / "out.json")


def test_async_error_shows_the_data_folder_as_data_path(runner_python, write_user_module, user_dir):
    # An execution's error and log reach any token holder: no server path in them.
    source = write_user_module(
        """
        import os
        def score(data_path, model_path):
            open(os.path.join(data_path, "missing.csv"))
        """
    )
    data_dir = user_dir / "executions" / "7"
    data_dir.mkdir(parents=True)
    result = run(runner_python, source, kind="async", args=[str(data_dir), str(user_dir)])
    assert not result.ok
    assert "<data_path>/missing.csv" in result.error
    assert str(data_dir) not in result.error and str(data_dir) not in result.traceback


def test_async_returning_an_int_is_an_error(runner_python, write_user_module, user_dir):
    source = write_user_module(
        """
        def score(data_path, model_path):
            return 3
        """
    )
    result = run(runner_python, source, kind="async", args=[str(user_dir), str(user_dir)])
    assert not result.ok
    assert result.phase == "result"
    assert "must return the output file's path as a str, but it returned a int" in result.error


# ------------------------------------------------------------------ environment & limits


def test_env_is_exactly_what_the_caller_built(runner_python, write_user_module, monkeypatch):
    monkeypatch.setenv("NEOMARIL_SHOULD_NOT_LEAK", "1")
    source = write_user_module(
        """
        import os
        def score(data, base_path):
            return {"secret": os.environ.get("MODEL_SECRET"),
                    "leak": os.environ.get("NEOMARIL_SHOULD_NOT_LEAK"),
                    "home": os.environ.get("HOME"),
                    "cwd": os.getcwd(),
                    "keys": sorted(os.environ)}
        """
    )
    result = run(runner_python, source, extra_env={"MODEL_SECRET": "s3cr3t"})
    assert result.ok, result
    assert result.result["secret"] == "s3cr3t"
    assert result.result["leak"] is None
    assert result.result["home"] == "/tmp"  # the sandbox's private /tmp
    assert result.result["cwd"] == str(source.parent)
    # LC_CTYPE may be added by the interpreter's locale coercion, PWD by bwrap's --chdir.
    assert set(result.result["keys"]) - {"LC_CTYPE", "PWD"} == {
        "TMPDIR",
        "HOME",
        "LANG",
        "MODEL_SECRET",
        "PATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
    }


def test_timeout_kills_the_model_and_its_children(runner_python, write_user_module, user_dir):
    source = write_user_module(
        """
        import subprocess, time
        def score(data, base_path):
            child = subprocess.Popen(["sleep", "61.4321"])
            print("waiting", flush=True)
            time.sleep(60)
        """
    )
    started = time.monotonic()
    result = run(runner_python, source, timeout=1.5)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 2
    assert not result.ok
    assert result.timed_out
    assert result.phase == "timeout"
    assert result.error == "timed out after 1.5 s"
    assert result.returncode == -signal.SIGKILL
    assert "waiting" in result.output
    # Its pid inside the sandbox means nothing here: find the child by its arguments.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        left = [
            p for p in psutil.process_iter(["cmdline", "status"]) if p.info["cmdline"] == ["sleep", "61.4321"]
        ]
        if all(p.info["status"] == psutil.STATUS_ZOMBIE for p in left):
            break
        time.sleep(0.05)
    assert not [p for p in left if p.info["status"] != psutil.STATUS_ZOMBIE], (
        "the model's child outlived the timeout"
    )


def _process_gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):  # killed, waiting for init to reap it
            return True
        time.sleep(0.05)
    return False


def test_os_exit_is_a_crash(runner_python, write_user_module):
    source = write_user_module(
        """
        import os
        def score(data, base_path):
            print("about to leave", flush=True)
            os._exit(7)
        """
    )
    result = run(runner_python, source)
    assert not result.ok
    assert result.phase == "crash"
    assert result.returncode == 7
    assert "exited with code 7" in result.error
    assert "about to leave" in result.error  # last output lines help the user
    assert "about to leave" in result.output


def test_answer_stands_when_the_process_will_not_exit(write_user_module, monkeypatch):
    # One interpreter is enough: this exercises the platform side.
    monkeypatch.setattr(oneshot, "_EXIT_GRACE", 0.5)
    source = write_user_module(
        """
        import threading, time
        def score(data, base_path):
            threading.Thread(target=time.sleep, args=(60,)).start()  # non-daemon: blocks exit
            return {"answered": True}
        """
    )
    started = time.monotonic()
    result = run(supported_interpreter(SUPPORTED_MINORS[-1]).path, source, timeout=30)  # the newest
    assert time.monotonic() - started < 5
    assert result.ok, result
    assert result.result == {"answered": True}
    assert result.returncode == -signal.SIGKILL
    assert "did not exit within 0.5 s of answering" in result.output


def test_answer_stands_when_native_code_aborts_at_shutdown(write_user_module):
    # What pyarrow's thread pool has done at interpreter shutdown: SIGABRT after the answer.
    source = write_user_module(
        """
        import atexit, os
        atexit.register(os.abort)
        def score(data, base_path):
            return {"answered": True}
        """
    )
    result = run(supported_interpreter(SUPPORTED_MINORS[-1]).path, source)
    assert result.ok, result
    assert result.result == {"answered": True}
    assert result.returncode == -signal.SIGABRT


def test_segfault_is_a_crash(runner_python, write_user_module):
    source = write_user_module(
        """
        import ctypes
        def score(data, base_path):
            ctypes.string_at(0)
        """
    )
    result = run(runner_python, source)
    assert result.phase == "crash"
    assert result.returncode == -signal.SIGSEGV
    assert "killed by SIGSEGV" in result.error


def test_memory_limit_turns_a_huge_allocation_into_an_error(runner_python, write_user_module):
    source = write_user_module(
        """
        def score(data, base_path):
            blob = bytearray(1024 * 1024 * 1024)
            return {"size": len(blob)}
        """
    )
    result = run(runner_python, source, memory_limit_mb=256)
    assert not result.ok
    assert result.phase == "call"
    assert result.error.startswith("MemoryError")


def test_output_callback_failure_does_not_stop_the_run(runner_python, write_user_module):
    source = write_user_module(
        """
        def score(data, base_path):
            for i in range(3):
                print(i)
            return {}
        """
    )

    def broken(line: str) -> None:
        raise RuntimeError("database is down")

    result = run(runner_python, source, on_output_line=broken)
    assert result.ok
    assert result.output == "0\n1\n2\n"


def test_missing_interpreter_is_a_crash(write_user_module, tmp_path):
    source = write_user_module("def score(d, b):\n    return {}\n")
    result = run(tmp_path / "no-such-python", source)
    assert not result.ok
    assert result.phase == "crash"
    assert "could not start the model's interpreter" in result.error


# --------------------------------------------------------------------------- protocol


def test_oneshot_garbage_request_exits_non_zero(runner_python, tmp_path):
    proc = subprocess.run(
        [str(runner_python), str(RUNNER_PATH), "oneshot"],
        input=struct.pack(">I", 3) + b"{{{",
        capture_output=True,
        env=build_runner_env({}, home=tmp_path),
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert b"protocol error" in proc.stderr


def test_oneshot_frame_is_exactly_one_strict_json_frame(runner_python, write_user_module):
    source = write_user_module("def score(d, b):\n    return {'caf\\u00e9': float('nan')}\n")
    request = json.dumps({"source": str(source), "entrypoint": "score", "kind": "sync", "args": ["{}", "/"]})
    proc = subprocess.run(
        [str(runner_python), str(RUNNER_PATH), "oneshot"],
        input=struct.pack(">I", len(request)) + request.encode(),
        capture_output=True,
        env=build_runner_env({}, home=source.parent),
        timeout=30,
    )
    assert proc.returncode == 0
    (length,) = struct.unpack(">I", proc.stdout[:4])
    assert len(proc.stdout) == 4 + length
    assert json.loads(proc.stdout[4:].decode("utf-8")) == {"ok": True, "result": {"café": None}}


def test_build_runner_env():
    env = build_runner_env({"A": "1", "PATH": "/opt/bin"}, home="/srv/run")
    assert env == {
        "PATH": "/opt/bin",
        "HOME": "/srv/run",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "A": "1",
    }
    assert build_runner_env({})["HOME"] == "/tmp"
    with pytest.raises(ValueError, match="invalid environment variable name"):
        build_runner_env({"A=B": "1"})
    with pytest.raises(ValueError, match="NUL"):
        build_runner_env({"A": "x\0y"})


# ----------------------------------------------------------------- numpy and pandas


NUMPY_PYTHON = "3.9"
UV = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "uv"


@pytest.fixture(scope="module")
def scientific_python(tmp_path_factory) -> Path:
    """A real uv environment with numpy and pandas, on an older Python."""
    base = supported_interpreter(NUMPY_PYTHON).path
    venv = tmp_path_factory.mktemp("sci-venv")
    subprocess.run([str(UV), "venv", "-q", "-p", str(base), str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(UV), "pip", "install", "-q", "-p", str(venv / "bin" / "python"), "numpy", "pandas"],
        check=True,
        timeout=600,
    )
    return venv / "bin" / "python"


@pytest.mark.slow
def test_numpy_and_pandas_results_become_plain_json(scientific_python, write_user_module):
    source = write_user_module(
        """
        import numpy as np
        import pandas as pd

        def score(data, base_path):
            frame = pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan], "t": pd.to_datetime(["2024-01-01", None])})
            return {
                "int64": np.int64(7),
                "float32": np.float32(0.25),
                "float32_tenth": np.float32(0.1),
                "float16s": np.array([[0.1, np.nan]], dtype="float16"),
                "float32_frame": pd.DataFrame({"p": np.array([0.1, np.nan], dtype="float32"), "q": [0.1 + 0.2, 1.0]}),
                "bool": np.bool_(True),
                "matrix": np.arange(6).reshape(2, 3),
                "series": pd.Series([1.5, np.nan, 3.0]),
                "frame": frame,
                "stamp": pd.Timestamp("2024-05-17 08:30"),
                "nat": pd.NaT,
                "nan": np.nan,
                "dates": np.array(["2024-01-01T10:00"], dtype="datetime64[ns]"),
                np.int64(5): "numpy key",
            }
        """
    )
    result = run(scientific_python, source, timeout=120)
    assert result.ok, result
    assert result.result == {
        "int64": 7,
        "float32": 0.25,
        "float32_tenth": 0.1,
        "float16s": [[0.1, None]],
        "float32_frame": [{"p": 0.1, "q": 0.30000000000000004}, {"p": None, "q": 1.0}],
        "bool": True,
        "matrix": [[0, 1, 2], [3, 4, 5]],
        "series": [1.5, None, 3.0],
        "frame": [
            {"a": 1, "b": 0.5, "t": "2024-01-01T00:00:00"},
            {"a": 2, "b": None, "t": None},
        ],
        "stamp": "2024-05-17T08:30:00",
        "nat": None,
        "nan": None,
        "dates": ["2024-01-01T10:00:00"],
        "5": "numpy key",
    }


@pytest.mark.slow
def test_pandas_indexes_timedeltas_and_periods_are_kept(scientific_python, write_user_module):
    """The same rules on an older Python and the pandas it gets (tests/.../test_runner_answers.py has them all)."""
    source = write_user_module(
        """
        import numpy as np
        import pandas as pd

        def score(data, base_path):
            sales = pd.DataFrame({"region": ["n", "n", "s"], "month": [1, 2, 1], "sales": [1.0, 2.0, 3.0]})
            return {
                "forecast": pd.DataFrame({"v": [1.0, np.nan]}, index=pd.date_range("2024-01-01", periods=2, name="ds")),
                "pivot": sales.pivot_table(index="region", columns="month", values="sales", aggfunc=["sum"]),
                "row": pd.DataFrame({"x": 1, "pred": 0.25}, index=[0]),
                "labelled": pd.Series({"a": 1.5, "b": np.nan}),
                "gaps": [pd.Timedelta("1 days 02:00:00.5"), pd.Timedelta(-1, "s"), np.timedelta64(90, "s")],
                "month": pd.Period("2024-01", "M"),
                "utc": pd.Series(pd.to_datetime(["2024-01-01 10:00"]).tz_localize("UTC")),
            }
        """
    )
    result = run(scientific_python, source, timeout=120)
    assert result.ok, result
    assert result.result == {
        "forecast": [{"ds": "2024-01-01T00:00:00", "v": 1.0}, {"ds": "2024-01-02T00:00:00", "v": None}],
        "pivot": [{"region": "n", "sum.1": 1.0, "sum.2": 2.0}, {"region": "s", "sum.1": 3.0, "sum.2": None}],
        "row": [{"x": 1, "pred": 0.25}],
        "labelled": {"a": 1.5, "b": None},
        "gaps": ["P1DT2H0M0.500S", "P-1DT23H59M59S", "P0DT0H1M30S"],
        "month": "2024-01",
        "utc": ["2024-01-01T10:00:00+00:00"],
    }
    source = write_user_module(
        """
        import pandas as pd

        def score(data, base_path):
            return {"frame": pd.DataFrame([[1, 2]], columns=["a", "a"])}
        """
    )
    result = run(scientific_python, source, timeout=120)
    assert result.phase == "result"
    assert result.error.startswith(
        'ValueError: the entrypoint\'s result has a pandas DataFrame at result["frame"] with more than one column named "a"'
    )


# --------------------------------------------------------------- output the worker holds

# The model's code can write to the answer's pipe (the runner's private copy of fd 1 is in
# its process) and print without end: the worker running it must hold neither whole.
FIND_ANSWER_FD = """
import os
def answer_fd():
    others = {os.readlink("/proc/self/fd/0"), os.readlink("/proc/self/fd/2")}
    for fd in range(3, 64):
        try:
            target = os.readlink("/proc/self/fd/%d" % fd)
        except OSError:
            continue
        if target.startswith("pipe:") and target not in others:
            return fd
"""


@pytest.fixture
def supervisors(monkeypatch) -> list:
    """The _Supervisor of each run, to look at what it held."""
    made = []
    original = oneshot._Supervisor.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(oneshot._Supervisor, "__init__", recording)
    return made


def test_an_answer_announced_over_the_frame_limit_is_refused_without_being_held(
    runner_python, write_user_module, supervisors
):
    source = write_user_module(
        FIND_ANSWER_FD
        + """
import struct
def score(data, base_path):
    fd = answer_fd()
    os.write(fd, struct.pack(">I", 0xFFFFFFF0))
    chunk = b"A" * (1 << 20)
    for _ in range(64):  # 64 MiB, unless the run is stopped
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
    return {}
"""
    )
    result = run(runner_python, source)
    assert result.phase == "crash"
    assert "announced frame of 4294967280 bytes exceeds the 268435456-byte limit" in result.error
    assert len(supervisors[0].stdout) == 4  # the header that says what was wrong, nothing after


def test_bytes_after_the_answer_frame_are_not_held(runner_python, write_user_module, supervisors):
    source = write_user_module(
        FIND_ANSWER_FD
        + """
import json, struct
def score(data, base_path):
    fd = answer_fd()
    payload = json.dumps({"ok": True, "result": {"forged": 1}}).encode()
    os.write(fd, struct.pack(">I", len(payload)) + payload + b"B" * (4 << 20))
    return {}
"""
    )
    result = run(runner_python, source)
    assert result.ok and result.result == {"forged": 1}  # the model's own answer, as it wrote it
    assert len(supervisors[0].stdout) == 4 + len(b'{"ok": true, "result": {"forged": 1}}')


def test_printed_output_waits_for_the_caller_instead_of_piling_up(
    runner_python, write_user_module, supervisors, monkeypatch
):
    monkeypatch.setattr(oneshot, "_PENDING_OUTPUT_CHARS", 64 * 1024)
    source = write_user_module(
        """
import sys
def score(data, base_path):
    sys.stderr.write("x\\n" * 200000)
    sys.stderr.flush()
    return {"done": True}
"""
    )
    seen = {"lines": 0}

    def slow_caller(line: str) -> None:
        if seen["lines"] == 0:
            time.sleep(2)  # the model has long finished printing by now
            supervisor = supervisors[0]
            seen["queued_events"] = supervisor.events.qsize()
            seen["pending_chars"] = supervisor.pending_chars
        seen["lines"] += 1

    result = run(runner_python, source, on_output_line=slow_caller)
    assert result.ok and result.result == {"done": True}
    assert seen["lines"] == 200000  # every line still reaches the caller, in the end
    assert seen["queued_events"] < 10
    assert seen["pending_chars"] <= 2 * 64 * 1024
    # Kept a batch to a string, not a string per line (which cost ~25 times the characters).
    assert len(supervisors[0].output) < 100
    assert result.output == "x\n" * 200000


def test_only_the_tail_of_a_long_output_is_kept_from_a_line_on(runner_python, write_user_module, monkeypatch):
    monkeypatch.setattr(oneshot, "MAX_OUTPUT_CHARS", 1000)
    monkeypatch.setattr(oneshot, "_PENDING_OUTPUT_CHARS", 100)
    source = write_user_module(
        """
import sys
def score(data, base_path):
    for n in range(20000):  # about 200 KB
        sys.stderr.write("line %d\\n" % n)
    return {}
"""
    )
    result = run(runner_python, source)
    assert result.ok
    head, _, kept = result.output.partition("\n")
    assert head == "[... earlier output truncated ...]"
    assert kept.endswith("line 19999\n") and kept.startswith("line ")
    # The limit, give or take one batch (what the reader gathered of one 64 KiB read).
    assert len(kept) <= 1000 + 100 + 64 * 1024


def test_stop_when_ends_a_run_its_caller_no_longer_wants(runner_python, write_user_module, monkeypatch):
    from models_app.runtime import oneshot

    monkeypatch.setattr(oneshot, "_STOP_CHECK_INTERVAL", 0.2)
    source = write_user_module(
        """
        import time
        def score(data, base_path):
            print("working", flush=True)
            time.sleep(60)
        """
    )
    asked = []

    def stop_when():
        asked.append(time.monotonic())
        return "the model was deleted" if len(asked) >= 3 else None

    started = time.monotonic()
    result = run(runner_python, source, timeout=30, stop_when=stop_when)
    assert time.monotonic() - started < 5 and len(asked) == 3
    assert (result.ok, result.phase, result.error, result.timed_out) == (
        False, "stopped", "the model was deleted", False,
    )  # fmt: skip
    assert result.returncode == -signal.SIGKILL


def test_a_run_that_answers_is_kept_whatever_stop_when_would_say_later(
    runner_python, write_user_module, monkeypatch
):
    # Once the answer is in, stop_when is no longer asked (its next time was in the past:
    # the wait before the process's exit was negative, and the run failed).
    from models_app.runtime import oneshot

    monkeypatch.setattr(oneshot, "_STOP_CHECK_INTERVAL", 0.01)
    source = write_user_module(
        """
        import json, time
        def score(data, base_path):
            time.sleep(0.3)
            return {"ok": 1}
        """
    )
    result = run(runner_python, source, timeout=30, stop_when=lambda: None)
    assert result.ok and result.result == {"ok": 1}, (result.phase, result.error)
