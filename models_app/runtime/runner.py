"""Neomaril model runner: runs a user's model code in the model's own interpreter.

The platform never imports user code itself. It executes this file with the model
environment's interpreter (any CPython 3.8-3.13), so this file must stay standalone:
standard library only, no syntax or runtime typing newer than 3.8, and no import of the
platform's packages (``protocol.py`` holds the platform's copy of the framing).

Framing, both directions: a 4-byte big-endian unsigned length, then that many bytes of
UTF-8 JSON. Frames above 256 MiB are refused.

Modes:

``oneshot``
    Read one request frame from stdin (``source``, ``entrypoint``, ``kind``, ``args``),
    call ``entrypoint(*args)`` once, write one response frame to stdout, exit 0. User
    failures are reported in the frame; a non-zero exit means a protocol problem. Kinds
    ``train`` and ``monitor`` hand the call to ``training_harness.py`` and
    ``monitoring_harness.py`` (beside this file) with ``args = [spec_json]``; see those files.

``serve --listen-fd FD --source FILE --entrypoint NAME [--load-fd FD]``
    Import the module once (exit 3 with the traceback on stderr if that fails), then
    answer ``ping`` and ``predict`` frames on the inherited listening Unix socket, one
    request at a time. SIGTERM ends it (after the call in flight) with exit 0. With
    ``--load-fd``, it also keeps its load counters in that shared-memory block (see
    ``_LoadBlock``) for the model host to read at any time.

Responses are ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "Type: message",
"traceback": "..." | null, "phase": "import" | "call" | "result" | "protocol"}`` (training
adds the phases "data" and "save", monitoring "data" and "config").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import decimal
import importlib.util
import json
import math
import mmap
import os
import select
import selectors
import signal
import socket
import struct
import sys
import time
import traceback

MAX_FRAME_BYTES = 256 * 1024 * 1024
_HEADER = struct.Struct(">I")
_RUNNER_FILE = os.path.normcase(os.path.abspath(__file__))
# The harness of each spec-driven kind, loaded only for that kind: the sandbox binds them beside this file.
_HARNESSES = {"train": "training_harness.py", "monitor": "monitoring_harness.py"}
_HARNESS_FILES = tuple(
    os.path.normcase(os.path.join(os.path.dirname(_RUNNER_FILE), name)) for name in _HARNESSES.values()
)

# Exit codes for problems that are not the user's fault (the frame can't say them).
EXIT_PROTOCOL = 2
EXIT_IMPORT_FAILED = 3


class ProtocolError(Exception):
    """The peer broke the framing (bad length, truncated frame, invalid JSON)."""


class _UserError(Exception):
    """A failure to report to the user as an error frame (server paths shortened)."""

    def __init__(self, phase, error, tb=None):
        error, tb = _shorten_paths(error), _shorten_paths(tb)
        Exception.__init__(self, error)
        self.phase = phase
        self.error = error
        self.traceback = tb

    def frame(self):
        return {"ok": False, "error": self.error, "traceback": self.traceback, "phase": self.phase}


class _Terminate(BaseException):
    """Raised by the SIGTERM handler; never swallowed by the user-code guards."""


# --------------------------------------------------------------------------- framing


def encode_frame(obj):
    """Serialise ``obj`` as one frame (strict JSON, no NaN)."""
    payload = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return _HEADER.pack(len(payload)) + payload


def _read_exactly(read_into, n, at_boundary):
    """Fill ``n`` bytes using ``read_into(memoryview) -> count``.

    Returns None on end-of-stream before the first byte when ``at_boundary`` (the peer
    simply closed); end-of-stream anywhere else is a truncated frame.
    """
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        count = read_into(view[got:])
        if not count:
            if got == 0 and at_boundary:
                return None
            raise ProtocolError(f"stream closed mid-frame ({got} of {n} bytes received)")
        got += count
    return bytes(buf)


def _read_frame(read_into):
    """Read one frame; None on a clean end-of-stream between frames."""
    header = _read_exactly(read_into, _HEADER.size, True)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"announced frame of {length} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    payload = _read_exactly(read_into, length, False)
    try:
        return json.loads(payload.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from exc


def read_frame_from_file(f):
    """Read one frame from a binary file object (stdin)."""
    return _read_frame(f.readinto)


def read_frame_from_socket(sock):
    """Read one frame from a connected socket."""
    return _read_frame(sock.recv_into)


def _write_fd(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --------------------------------------------------------------------- error reports


def _describe(exc):
    """One ``Type: message`` string, robust to a broken ``__str__``."""
    try:
        message = str(exc)
    except Exception:
        message = "<exception str() failed>"
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


# The folder of the user's source, once known: paths under it are shown relative to it.
_model_folder = None
# An Async execution's data folder (its data_path): shown as <data_path>/.
_data_folder = None


def _shorten_paths(text):
    """``text`` with the server's folders shortened, as any caller holding a token may see it.

    Error frames reach callers (a Sync call's 422, an execution's error and log, a build's
    log): a path under the model's folder becomes relative to it, the environment's
    (``sys.prefix``, its site-packages included) ``<env>/...``, the interpreter's
    ``<python>/...``. Every error frame is a ``_UserError``, so this is the one place.
    """
    if not text:
        return text
    folders = [(sys.prefix, "<env>/"), (sys.base_prefix, "<python>/")]
    if _model_folder:
        folders.append((_model_folder, ""))
    if _data_folder:
        folders.append((_data_folder, "<data_path>/"))
    # The longest first: the model's folder or the environment may sit inside another one.
    for folder, shown in sorted(folders, key=lambda pair: -len(pair[0])):
        for form in {folder, os.path.realpath(folder)}:
            if len(form) > 1:
                text = text.replace(form.rstrip(os.sep) + os.sep, shown)
    return text


def _is_runner_frame(filename):
    # importlib's own frames sit between us and the user's module during exec_module.
    return os.path.normcase(filename) in (_RUNNER_FILE, *_HARNESS_FILES) or filename.startswith(
        "<frozen importlib"
    )


def _user_traceback(exc):
    """Format ``exc`` with our leading frames cut, so the user's code comes first."""
    tb = exc.__traceback__
    while tb is not None and _is_runner_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    try:
        return "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:  # pragma: no cover - a pathological exception object
        return _describe(exc) + "\n"


def _guard(phase, func, *args):
    """Run user code; any failure (even SystemExit) becomes a ``_UserError``."""
    try:
        return func(*args)
    except (_Terminate, _UserError):
        raise
    # User code may raise anything, SystemExit and KeyboardInterrupt included: nothing
    # sends a runner SIGINT (the platform stops it with SIGTERM, _Terminate).
    except BaseException as exc:
        raise _UserError(phase, _describe(exc), _user_traceback(exc)) from exc


# ------------------------------------------------------------------- loading the model


def _import_source(source):
    """Import the user's file as a module named after its stem."""
    global _model_folder
    source = os.path.abspath(source)
    _model_folder = os.path.dirname(source)
    if not os.path.isfile(source):
        raise _UserError("import", f"FileNotFoundError: model source {source} does not exist")
    name = os.path.splitext(os.path.basename(source))[0]
    if name in sys.modules:
        # Replacing it in sys.modules would break every library that uses the real one.
        raise _UserError(
            "import",
            f"ImportError: the model file {os.path.basename(source)} has the name of the module {name!r}, "
            "which Python has already loaded; rename the file",
        )
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise _UserError("import", f"ImportError: cannot import {source} as a Python module")
    # Helper files beside the source (utils.py, ...) must be importable.
    folder = os.path.dirname(source)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    module = importlib.util.module_from_spec(spec)
    # Registered before running it so pickles that reference ``<stem>.Class`` resolve.
    sys.modules[name] = module
    try:
        _guard("import", spec.loader.exec_module, module)
    except _UserError:
        sys.modules.pop(name, None)
        raise
    return module


def _resolve_entrypoint(module, name):
    func = getattr(module, name, None)
    if func is None or not callable(func):
        found = sorted(
            attr
            for attr, value in vars(module).items()
            if callable(value)
            and not attr.startswith("_")
            and getattr(value, "__module__", None) == module.__name__
        )
        what = "has no attribute" if func is None else "has a non-callable attribute"
        hint = f" (functions defined there: {', '.join(found)})" if found else ""
        raise _UserError(
            "import",
            f"AttributeError: entrypoint {name!r} not found: "
            f"module {module.__name__!r} {what} {name!r}{hint}",
        )
    return func


def load_entrypoint(source, entrypoint):
    """Import ``source`` and return its callable ``entrypoint`` (raises ``_UserError``)."""
    # Guarded too: a module-level __getattr__ is user code.
    return _guard("import", _resolve_entrypoint, _import_source(source), entrypoint)


# ---------------------------------------------------------------- result normalisation


def _path_repr(path, key):
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}[{json.dumps(str(key), ensure_ascii=False)}]"


def _key_to_str(key):
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)  # same spelling as json.dumps uses for keys (true, 1, 1.5)
    if isinstance(key, (datetime.date, datetime.time)):
        return key.isoformat()
    if isinstance(key, datetime.timedelta):  # spelled as the values are
        return _iso_duration(key)
    if _is_numpy_narrow_float(key):
        return _key_to_str(_shortest_floats(key))
    if hasattr(key, "item") and callable(key.item):  # numpy scalar key
        with contextlib.suppress(Exception):
            return _key_to_str(key.item())
    return str(key)


def _is_narrow_float(dtype):
    """float32 or float16, numpy's or pandas' (the nullable "Float32" too), not float64."""
    return getattr(dtype, "kind", None) == "f" and getattr(dtype, "itemsize", 8) < 8


def _is_numpy_narrow_float(value):
    # numpy's own types only: a look-alike (cupy, jax) keeps its tolist() conversion.
    return type(value).__module__ == "numpy" and _is_narrow_float(getattr(value, "dtype", None))


def _shortest_floats(values):
    """float32/float16 numbers (a numpy scalar or array, any shape, or a pandas column) as
    Python floats (nested lists for an array) that print as numpy prints them.

    ``tolist()`` widens to float64, so ``np.float32(0.1)`` would answer
    ``0.10000000149011612``. numpy's shortest decimal that round-trips at the value's own
    precision, read back as a float, has that same decimal as its repr (checked for every
    float16 and millions of float32). NaN and infinities stay floats, so they become null
    as any float's do.
    """
    import numpy  # only called with numpy's or pandas' values: numpy is already imported

    dtype = getattr(values, "dtype", None)
    if hasattr(dtype, "numpy_dtype"):  # pandas' nullable Float32: <NA> as NaN, null either way
        values = values.to_numpy(dtype=dtype.numpy_dtype, na_value=float("nan"))
    array = numpy.asarray(values)  # a plain ndarray: np.matrix's rows would stay 2-D
    # str() is the fastest way to those digits, but np.set_printoptions(legacy="1.13")
    # makes it drop some; format_float_positional gives them whatever the print options.
    shortest = str if str(numpy.float32(1 / 3)) == "0.33333334" else numpy.format_float_positional

    def convert(a):
        if a.ndim == 0:
            return float(shortest(a[()]))
        if a.ndim == 1:
            return [float(shortest(x)) for x in a]
        return [convert(sub) for sub in a]

    return convert(array)


def _column_values(series):
    """A pandas Series' (or Index's) values as a list, float32/float16 ones as numpy prints them."""
    if _is_narrow_float(getattr(series, "dtype", None)):
        return _shortest_floats(series)
    return series.tolist()


def _labels(index):
    """An index's labels to iterate, a float32 one's as numpy prints them."""
    if index.nlevels == 1 and _is_narrow_float(getattr(index, "dtype", None)):
        return _shortest_floats(index)
    return index


def _is_missing(value):
    # pandas.NaT / pandas.NA: duck-typed by class name, since we can't import pandas.
    return type(value).__name__ in ("NaTType", "NAType")


def _to_json(value, path, active):
    """Return ``value`` as plain JSON data, or raise ``_UserError`` naming ``path``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)  # IntEnum and friends become plain ints
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None  # answers must be strict JSON
    if _is_missing(value):
        return None
    if isinstance(value, (datetime.date, datetime.time)):  # pandas.Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return _to_json(float(value), path, active)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise _UserError(
            "result",
            f"TypeError: the entrypoint's result contains bytes at {path}; "
            "decode them (or base64-encode them) into a str",
        )

    container = isinstance(value, (dict, list, tuple, set, frozenset)) or hasattr(value, "tolist")
    if container:
        # A self-referencing result would otherwise recurse until RecursionError.
        if id(value) in active:
            raise _UserError(
                "result", f"ValueError: the entrypoint's result has a circular reference at {path}"
            )
        active.add(id(value))
    try:
        if isinstance(value, dict):
            result = {}
            for k, v in value.items():
                key = _key_to_str(k)
                result[key] = _to_json(v, _path_repr(path, key), active)
            return result
        if isinstance(value, (list, tuple)):
            return [_to_json(v, _path_repr(path, i), active) for i, v in enumerate(value)]
        if isinstance(value, (set, frozenset)):
            items = list(value)
            with contextlib.suppress(TypeError):  # deterministic order where items compare
                items.sort()
            return [_to_json(v, _path_repr(path, i), active) for i, v in enumerate(items)]
        converted = _convert_foreign(value, path)
        if converted is not _NOT_CONVERTED:
            return _to_json(converted, path, active)
    finally:
        if container:
            active.discard(id(value))
    raise _UserError(
        "result",
        f"TypeError: the entrypoint's result contains a value of type {_type_name(value)} at {path}, "
        "which cannot be turned into JSON",
    )


_NOT_CONVERTED = object()


def _type_name(value):
    cls = type(value)
    module = getattr(cls, "__module__", "builtins")
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _iso_duration(value):
    """A timedelta as pandas' ``to_json(date_format="iso")`` writes one: ``P1DT2H3M4.500S``.

    Days carry the sign, the rest counts up from them (-1 s is ``P-1DT23H59M59S``), as in
    pandas; the fraction comes in groups of three digits, down to what is not zero.
    """
    parts = getattr(value, "components", None)  # pandas.Timedelta: nanoseconds too
    if parts is not None:
        days, hours, minutes, seconds = parts.days, parts.hours, parts.minutes, parts.seconds
        millis, micros, nanos = parts.milliseconds, parts.microseconds, parts.nanoseconds
    else:
        days = value.days  # datetime.timedelta keeps seconds and microseconds non-negative
        hours, rest = divmod(value.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        (millis, micros), nanos = divmod(value.microseconds, 1000), 0
    text = f"P{days}DT{hours}H{minutes}M{seconds}"
    if nanos:
        return f"{text}.{millis:03d}{micros:03d}{nanos:03d}S"
    if micros:
        return f"{text}.{millis:03d}{micros:03d}S"
    if millis:
        return f"{text}.{millis:03d}S"
    return text + "S"


def _quoted(keys, limit=5):
    shown = ", ".join(json.dumps(key, ensure_ascii=False) for key in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _repeated(keys):
    seen, repeated = set(), []
    for key in keys:
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    return repeated


def _label_key(label, levels):
    """A pandas label as a JSON key; a MultiIndex's tuple joined with ".", its "" levels left out."""
    if levels == 1:
        return _key_to_str(label)
    return ".".join(_key_to_str(part) for part in label if not (isinstance(part, str) and part == ""))


def _positional(index):
    """True when an index says nothing but row numbers: one unnamed level of integers.

    In any order: a frame filtered or sorted keeps its old row numbers, and an answer's
    shape must not change with which rows the input kept. Labels that mean something
    (dates, names, a named index) are kept instead.
    """
    if index.nlevels != 1 or index.name is not None:
        return False
    return len(index) == 0 or getattr(index.dtype, "kind", None) in ("i", "u")


def _frame_records(frame, path):
    """A DataFrame as a list of records, its index as their first fields unless it is positional."""
    what = f"the entrypoint's result has a pandas DataFrame at {path}"
    columns = frame.columns
    levels = getattr(columns, "nlevels", 1)
    keys = [_label_key(label, levels) for label in columns]
    repeated = _repeated(keys)
    if repeated:
        joined = ' (a MultiIndex\'s levels joined with ".")' if levels > 1 else ""
        raise _UserError(
            "result",
            f"ValueError: {what} with more than one column named {_quoted(repeated)}{joined}, "
            "and a record can hold a name once: rename them (df.columns = [...] or df.rename(columns=...))",
        )
    records = _records(frame, keys, levels, what)
    # pandas hands float32/float16 cells over widened to float64: put numpy's spelling back.
    for position, dtype in enumerate(_column_dtypes(frame)):
        if _is_narrow_float(dtype):
            key = keys[position]
            for record, cell in zip(records, _shortest_floats(frame.iloc[:, position])):
                record[key] = cell
    return records


def _column_dtypes(frame):
    """The columns' dtypes. frame.dtypes builds a Series (13 us, a tenth of a one-row
    frame's whole conversion); the block manager's list is 1 us, where pandas has it."""
    get_dtypes = getattr(getattr(frame, "_mgr", None), "get_dtypes", None)
    if callable(get_dtypes):
        with contextlib.suppress(Exception):
            dtypes = list(get_dtypes())
            if len(dtypes) == frame.shape[1]:
                return dtypes
    return frame.dtypes.tolist()


def _records(frame, keys, levels, what):
    index = frame.index
    if _positional(index):
        if levels == 1:
            return frame.to_dict(orient="records")  # the common answer, as it always was
        return [dict(zip(keys, row)) for row in frame.itertuples(index=False, name=None)]
    # The index's fields as reset_index() names them: its name, else "index" (or "level_0"
    # when a column has that name), a MultiIndex's unnamed levels "level_<n>".
    names = list(index.names)
    if len(names) == 1 and names[0] is None:
        names = ["level_0" if "index" in keys else "index"]
    fields = [_key_to_str(f"level_{n}" if name is None else name) for n, name in enumerate(names)]
    clash = _repeated(fields + keys)  # the columns' keys are unique by now: a field is in each
    if clash:
        raise _UserError(
            "result",
            f"ValueError: {what} whose index would become the field {_quoted(clash)} of each record, "
            "which the record already has: rename the index (df.rename_axis(...)) or that column, "
            "or drop the index (df.reset_index(drop=True))",
        )
    keys = fields + keys
    single = index.nlevels == 1
    return [
        dict(zip(keys, ((label,) if single else tuple(label)) + row))
        for label, row in zip(_labels(index), frame.itertuples(index=False, name=None))
    ]


def _series_object(series, index, path):
    """A Series with labels as an object keyed by them."""
    keys = [_label_key(label, index.nlevels) for label in _labels(index)]
    repeated = _repeated(keys)
    if repeated:
        raise _UserError(
            "result",
            f"ValueError: the entrypoint's result has a pandas Series at {path} whose labels repeat "
            f"({_quoted(repeated)}), and a Series with labels becomes a JSON object keyed by them: "
            "make the labels unique, return series.to_frame() (records, the label a field of each) "
            "or series.tolist() (a list, the labels left out)",
        )
    return dict(zip(keys, _column_values(series)))


def _convert_foreign(value, path):
    """numpy/pandas (or look-alike) objects to plain Python, by duck typing."""
    try:
        if isinstance(value, datetime.timedelta):  # pandas.Timedelta is one
            return _iso_duration(value)
        if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas.DataFrame
            if hasattr(getattr(value, "index", None), "nlevels"):
                return _frame_records(value, path)
            return value.to_dict(orient="records")
        cls = type(value)
        if cls.__name__ == "Period" and cls.__module__.startswith("pandas"):
            return str(value)  # 2024-01, 2024Q1
        index = getattr(value, "index", None)
        if hasattr(index, "nlevels") and hasattr(value, "tolist"):  # pandas.Series
            if _positional(index):
                return _column_values(value)
            return _series_object(value, index, path)
        dtype = getattr(value, "dtype", None)
        # numpy's datetime64[ns] and timedelta64[ns] .tolist() give int nanoseconds; in
        # microseconds they give datetimes and timedeltas. (pandas' Index gives Timestamps
        # and Timedeltas, and can't take this astype when tz-aware.)
        kind = getattr(dtype, "kind", None)
        if kind in ("M", "m") and hasattr(value, "astype") and not cls.__module__.startswith("pandas"):
            value = value.astype("datetime64[us]" if kind == "M" else "timedelta64[us]")
        if _is_numpy_narrow_float(value) or (
            cls.__module__.startswith("pandas") and _is_narrow_float(dtype)  # a float32 Index
        ):
            return _shortest_floats(value)
        if hasattr(value, "tolist") and callable(value.tolist):  # ndarray, Index, numpy scalar
            return value.tolist()
        if hasattr(value, "item") and callable(value.item):  # other numpy-like scalars
            return value.item()
    except _UserError:
        raise
    except Exception as exc:
        raise _UserError(
            "result",
            f"TypeError: could not convert the {_type_name(value)} at {path} to JSON: {_describe(exc)}",
            _user_traceback(exc),
        ) from exc
    return _NOT_CONVERTED


def normalise_sync_result(value):
    """Turn a sync entrypoint's return value into plain, strict JSON data."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            # The product's contract: a returned str is the answer's JSON text. Say how to
            # answer a plain word such as "approved" instead.
            shown = value if len(value) <= 40 else value[:40] + "..."
            example = ""
            if value.strip() and len(value) <= 40 and value.lstrip()[:1] not in ("{", "["):
                example = f" (such as {json.dumps({'result': value}, ensure_ascii=False)})"
            raise _UserError(
                "result",
                f"the entrypoint returned a string that is not valid JSON: {exc}, in {shown!r}. "
                "A str that score() returns is taken as the answer's JSON text: return a dict "
                f"or a list instead{example}, or json.dumps(text) to answer the text as a JSON string",
            ) from exc
    try:
        return _to_json(value, "result", set())
    except RecursionError:
        raise _UserError(
            "result", "RecursionError: the result is nested too deeply to turn into JSON"
        ) from None


def normalise_async_result(value):
    """An async entrypoint returns the output file's path (validated by the platform)."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str):
            return path
    raise _UserError(
        "result",
        "TypeError: the entrypoint must return the output file's path as a str, "
        f"but it returned a {_type_name(value)}",
    )


def _response_bytes(build):
    """Encode ``{"ok": true, "result": build()}``, or the error frame if that fails."""
    try:
        return encode_frame({"ok": True, "result": build()})
    except _UserError as err:
        return encode_frame(err.frame())
    except UnicodeEncodeError as exc:
        return encode_frame(
            _UserError(
                "result", f"the entrypoint's result contains text that is not valid Unicode: {exc}"
            ).frame()
        )
    except ProtocolError as exc:
        return encode_frame(_UserError("result", f"the entrypoint's result is too large: {exc}").frame())


# ---------------------------------------------------------------------------- oneshot


def _load_harness(name):
    """The harness file ``name``, by path: the runner's folder is not on sys.path (user code must not see it)."""
    path = os.path.join(os.path.dirname(_RUNNER_FILE), name)
    module_name = "neomaril_" + os.path.splitext(name)[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise _UserError("protocol", f"ProtocolError: the harness {path} is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def run_oneshot():
    """Oneshot mode: one request on stdin, one response on the real stdout."""
    # From here on fd 1 is stderr, for print() and for C code alike, so nothing the user
    # prints can land inside the response; the frame goes to a private copy of fd 1.
    sys.stdout.flush()
    frame_fd = os.dup(1)  # not inheritable: the user's subprocesses don't get it
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    try:
        request = read_frame_from_file(sys.stdin.buffer)
        if request is None:
            raise ProtocolError("no request frame on stdin")
        source, entrypoint, kind, args = _parse_oneshot_request(request)
    except ProtocolError as exc:
        sys.stderr.write(f"neomaril runner: protocol error: {exc}\n")
        return EXIT_PROTOCOL

    normalise = normalise_sync_result if kind == "sync" else normalise_async_result
    if kind == "async":
        global _data_folder
        _data_folder = os.path.abspath(args[0]) if args else None

    def build():
        # The harnesses load the source themselves, once their libraries are in.
        if kind == "train":
            return _load_harness(_HARNESSES[kind]).train(sys.modules[__name__], source, entrypoint, args[0])
        if kind == "monitor":
            return _load_harness(_HARNESSES[kind]).monitor(sys.modules[__name__], source, entrypoint, args[0])
        func = load_entrypoint(source, entrypoint)
        if kind == "check":  # import the module and find the entrypoint, call nothing
            return None
        return _guard("result", normalise, _guard("call", func, *args))

    data = _response_bytes(build)
    _flush_std()
    _write_fd(frame_fd, data)
    os.close(frame_fd)
    return 0


def _parse_oneshot_request(request):
    if not isinstance(request, dict):
        raise ProtocolError("request must be a JSON object")
    source, entrypoint = request.get("source"), request.get("entrypoint")
    kind, args = request.get("kind"), request.get("args", [])
    if not isinstance(source, str) or not isinstance(entrypoint, str):
        raise ProtocolError("request needs string 'source' and 'entrypoint'")
    if kind not in ("sync", "async", "check", "train", "monitor"):
        raise ProtocolError(
            f"request 'kind' must be 'sync', 'async', 'check', 'train' or 'monitor', not {kind!r}"
        )
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ProtocolError("request 'args' must be a list of strings")
    if kind in _HARNESSES and len(args) != 1:
        raise ProtocolError(f"a {kind!r} request's 'args' must be [spec_json]")
    return source, entrypoint, kind, args


# ------------------------------------------------------------------------------ serve


class _LoadBlock:
    """This runner's load counters, in a shared-memory block the model host reads at any time.

    The host used to ask with a ping, which waits behind the call in progress: a slow
    call looked like calls queuing. The host makes the block (a sealed memfd of
    ``SIZE`` bytes) and hands over its descriptor; ``protocol.LoadBlock`` is its reader.
    Native 8-byte words: ``seq`` (uint64), then doubles ``started`` (the monotonic time
    the call in progress started, 0 between calls), ``busy`` (seconds spent in finished
    calls), ``requests``, ``waited`` and ``queued`` (see ``_Server``). A seqlock: ``seq`` is odd while
    the record is rewritten, so a reader retries instead of taking a torn record.
    ``started`` alone is written outside it, as one aligned store: either value is
    consistent with the rest (the call is not in ``busy`` until it ends).
    """

    SIZE = 48

    _RECORD = struct.Struct("@5d")  # started, busy, requests, waited, queued: the words after seq

    def __init__(self, fd):
        self._map = mmap.mmap(fd, self.SIZE)  # holds a descriptor of its own (before 3.13)
        os.close(fd)
        self._seq = memoryview(self._map)[0:8].cast("Q")
        self._started = memoryview(self._map)[8:16].cast("d")
        self._next = self._seq[0] + 1  # the host made it zeroed: 1, odd

    def call_started(self, when):
        self._started[0] = when

    def call_ended(self, busy, requests, waited, queued):
        self._seq[0] = self._next  # odd: being written
        self._RECORD.pack_into(self._map, 8, 0.0, busy, requests, waited, queued)
        self._seq[0] = self._next + 1
        self._next += 2


class _Server:
    def __init__(self, func, idle_timeout, load=None):
        self.func = func
        self.idle_timeout = idle_timeout
        self.load = load  # a _LoadBlock when the host gave one
        self.requests = 0
        # Seconds spent answering predictions since the start: the model host samples it
        # to see how busy this runner is, and adds replicas when it is busy most of the time.
        self.busy = 0.0
        # Predictions that ended with another call already waiting (sent on another
        # connection while this one ran): the host adds a replica only while calls queue,
        # not for one caller whose calls keep a runner busy one after another.
        self.waited = 0
        self.calls_waiting = lambda: 0  # how many calls wait on other connections; set by serve_forever

    def handle(self, request):
        """Answer one decoded request frame with the bytes of one response frame."""
        op = request.get("op") if isinstance(request, dict) else None
        if op == "ping":
            return encode_frame(
                {
                    "ok": True,
                    "pong": True,
                    "pid": os.getpid(),
                    "requests": self.requests,
                    "busy": self.busy,
                    "waited": self.waited,
                }
            )
        if op == "predict":
            data, base_path = request.get("data"), request.get("base_path")
            if not isinstance(data, str) or not isinstance(base_path, str):
                return _protocol_error_frame("predict needs string 'data' and 'base_path'")
            self.requests += 1
            # CLOCK_MONOTONIC: the host adds the call in progress to `busy` with its own clock.
            started = time.monotonic()
            load = self.load
            if load is not None:
                load.call_started(started)
            try:
                return _response_bytes(
                    lambda: _guard(
                        "result", normalise_sync_result, _guard("call", self.func, data, base_path)
                    )
                )
            finally:
                self.busy += time.monotonic() - started
                # Asked before the answer leaves: the caller of this call cannot have sent
                # its next one yet, so whatever is ready came from another caller, and waited.
                queued = self.calls_waiting()
                self.waited += queued > 0
                if load is not None:
                    load.call_ended(self.busy, self.requests, self.waited, queued)
        return _protocol_error_frame(f"unknown op {op!r} (expected 'ping' or 'predict')")

    def serve_one_frame(self, conn):
        """Answer the frame waiting on ``conn``; False when the connection is done.

        ``conn`` carries the idle timeout (set once, at accept): once a frame has started
        arriving the rest must come within it, or a stalled client would hold this
        single-threaded runner.
        """
        try:
            request = read_frame_from_socket(conn)
        except ProtocolError as exc:
            # The stream can't be resynchronised: say why (if the client still listens), then drop it.
            with contextlib.suppress(OSError):
                conn.sendall(_protocol_error_frame(str(exc)))
            return False
        if request is None:
            return False
        if _hung_up(conn):
            # The caller gave up while this call waited behind others (its timeout): the
            # answer would go nowhere, and running it would make every call queued after
            # it wait longer still, so an overload fed on itself.
            return False
        response = self.handle(request)
        _flush_std()
        conn.sendall(response)
        if _terminating:
            raise _Terminate()
        return True

    def serve_forever(self, server_sock):
        """Multiplex many persistent connections; run user code one request at a time.

        Web processes keep pooled connections open, so a runner must not give one
        connection exclusive use until it closes.
        """
        global _serving
        selector = selectors.DefaultSelector()
        selector.register(server_sock, selectors.EVENT_READ)
        # SIGTERM only sets a flag here; the wake-up descriptor makes select() return for it.
        woken, waker = socket.socketpair()
        for end in (woken, waker):
            end.setblocking(False)
        signal.set_wakeup_fd(waker.fileno(), warn_on_full_buffer=False)
        selector.register(woken, selectors.EVENT_READ)
        answering = None  # the connection whose frame is being answered

        def calls_waiting():
            # New connections (the host's pings among them) wait in the listener: not calls.
            return sum(
                key.fileobj not in (answering, server_sock, woken) for key, _events in selector.select(0)
            )

        self.calls_waiting = calls_waiting
        _serving = True
        try:
            while not _terminating:
                for key, _events in selector.select():
                    if key.fileobj is woken:
                        with contextlib.suppress(OSError):
                            woken.recv(512)
                        continue
                    if key.fileobj is server_sock:
                        conn, _addr = server_sock.accept()
                        # Once per connection: settimeout costs two syscalls.
                        conn.settimeout(self.idle_timeout or None)
                        selector.register(conn, selectors.EVENT_READ)
                        continue
                    conn = answering = key.fileobj
                    try:
                        keep = self.serve_one_frame(conn)
                    except OSError as exc:  # client vanished or stalled; the others are served
                        sys.stderr.write(f"neomaril runner: connection dropped: {exc}\n")
                        keep = False
                    if not keep:
                        selector.unregister(conn)
                        conn.close()
        finally:
            _serving = False
            signal.set_wakeup_fd(-1)
            for key in list(selector.get_map().values()):
                if key.fileobj is not server_sock:
                    key.fileobj.close()
            selector.close()
            waker.close()


def _hung_up(conn):
    """Whether the caller has closed its end of ``conn`` (one poll, no wait)."""
    poller = select.poll()
    poller.register(conn, select.POLLRDHUP)
    return any(events & (select.POLLRDHUP | select.POLLHUP) for _fd, events in poller.poll(0))


def _protocol_error_frame(message):
    return encode_frame(
        {"ok": False, "error": "ProtocolError: " + message, "traceback": None, "phase": "protocol"}
    )


_terminating = False
# Set while serve mode waits for and answers calls: a SIGTERM then (a replica leaving, a
# restart) lets the call in flight be answered and ends the runner after it, instead of
# raising inside the user's score() and dropping the call.
_serving = False


def _on_sigterm(signum, frame):
    global _terminating
    # The flag covers user code that swallows the exception with a bare ``except:``.
    _terminating = True
    if not _serving:
        raise _Terminate()


def run_serve(listen_fd, source, entrypoint, idle_timeout, load_fd=None):
    """Serve mode: import once, then answer frames on the inherited listening socket until SIGTERM.

    The host made the socket and queues callers on it while the model loads; the
    runner never sees the socket's path (its sandbox has no view of that folder).
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    server_sock = socket.socket(fileno=listen_fd)
    # Mapped before the user's import runs, and the inherited descriptor closed (the
    # mapping keeps a non-inheritable one): the user's subprocesses don't get it.
    load = _LoadBlock(load_fd) if load_fd is not None else None
    try:
        func = load_entrypoint(source, entrypoint)
    except _Terminate:
        return 0
    except _UserError as err:
        sys.stderr.write(err.traceback or "")
        sys.stderr.write(f"neomaril runner: could not load the model: {err.error}\n")
        sys.stderr.flush()
        return EXIT_IMPORT_FAILED
    if _terminating:  # SIGTERM arrived during an import that swallowed it
        return 0
    server = _Server(func, idle_timeout, load)
    try:
        server.serve_forever(server_sock)  # returns on a SIGTERM that came between calls
    except (_Terminate, KeyboardInterrupt):
        return 0
    finally:
        server_sock.close()
    return 0


# ------------------------------------------------------------------------------- main


def _clean_sys_path():
    # Running ``python runner.py`` puts the platform's runtime folder first on sys.path;
    # user code must not be able to import the platform's modules by accident.
    here = os.path.dirname(_RUNNER_FILE)
    sys.path[:] = [p for p in sys.path if os.path.normcase(os.path.abspath(p or ".")) != here]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="runner.py", description="Neomaril model runner")
    sub = parser.add_subparsers(dest="mode")
    sub.required = True
    sub.add_parser("oneshot", help="run one request read from stdin")
    serve = sub.add_parser("serve", help="serve sync predictions on an inherited listening Unix socket")
    serve.add_argument("--listen-fd", type=int, required=True, help="the listening socket's file descriptor")
    serve.add_argument("--source", required=True)
    serve.add_argument("--entrypoint", required=True)
    serve.add_argument(
        "--load-fd", type=int, default=None, help="a shared-memory block to keep the load counters in"
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        help="drop a connection idle for this many seconds, so one client can't block the runner (0: never)",
    )
    args = parser.parse_args(argv)

    _clean_sys_path()
    sys.dont_write_bytecode = True  # model folders may be read-only or shared storage
    for stream in (sys.stdout, sys.stderr):
        # Block-buffered pipes (3.8's stderr, any stdout) would delay the user's log
        # lines, or lose them when the process is killed.
        with contextlib.suppress(Exception):
            stream.reconfigure(line_buffering=True)
    if args.mode == "oneshot":
        return run_oneshot()
    return run_serve(args.listen_fd, args.source, args.entrypoint, args.idle_timeout, args.load_fd)


if __name__ == "__main__":
    sys.exit(main())
