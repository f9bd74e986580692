"""Neomaril training harness: one training run's in-sandbox half, loaded by runner.py for kind "train".

The runner executes it in the run's own environment, so it keeps the runner's rules:
no import of the platform's packages and nothing newer than Python 3.8. pandas, pyarrow
and cloudpickle are imported only here, at the start of a run: the platform adds them to
every training environment, and a missing one is named instead of failing obscurely.

``train(runner, source, entrypoint, spec_json)`` runs one training (the spec is described
in ``_parse_spec``), writes X_train.parquet, y_train.parquet, model_output.parquet,
model.pkl, metrics.json and params.json into the spec's ``out_dir``, and returns the
summary the runner sends back. Every failure is raised as the runner's ``_UserError``
with its phase: "import", "data", "call" (also loading an External run's model file),
"result" or "save" ("protocol" for a bad spec).
"""

import contextlib
import importlib
import inspect
import json
import math
import numbers
import os
import re
import shutil
import sys

MODEL_TYPES = ("Classification", "Regression", "Unsupervised")
# The platform adds these to every training environment (pyarrow writes the parquet files).
LIBRARIES = ("pandas", "pyarrow", "cloudpickle")
_KEYS_TEXT = (
    "X_train, y_train (may be None for Unsupervised), model_output, pipeline and metrics, "
    "and optionally extra (a list of files written in base_path)"
)
_MAX_DEPTH = 20


def train(runner, source, entrypoint, spec_json):
    """Run the training the spec describes; return the result frame's ``result``."""
    spec = _parse_spec(runner, spec_json)
    run = _Run(runner, spec)
    if spec["mode"] == "custom":
        return run.custom(source, entrypoint)
    return run.external()


# ----------------------------------------------------------------------------- spec


def _parse_spec(runner, spec_json):
    """The platform's request; a bad one is the platform's bug (phase "protocol")."""

    def bad(message):
        return runner._UserError("protocol", "ProtocolError: training spec: " + message)

    try:
        spec = json.loads(spec_json)
    except ValueError as exc:
        raise bad(f"not JSON ({exc})") from exc
    if not isinstance(spec, dict):
        raise bad("must be a JSON object")
    mode = spec.get("mode")
    if mode not in ("custom", "external"):
        raise bad(f"'mode' must be 'custom' or 'external', not {mode!r}")
    if spec.get("model_type") not in MODEL_TYPES:
        raise bad(f"'model_type' must be one of {', '.join(MODEL_TYPES)}, not {spec.get('model_type')!r}")
    out_dir = spec.get("out_dir")
    if not isinstance(out_dir, str) or not os.path.isdir(out_dir):
        raise bad(f"'out_dir' must be an existing folder, not {out_dir!r}")
    base_path = spec.get("base_path")
    if (mode == "custom" or base_path is not None) and not (
        isinstance(base_path, str) and os.path.isdir(base_path)
    ):
        raise bad(f"'base_path' must be an existing folder, not {base_path!r}")
    if mode == "custom":
        if not isinstance(spec.get("data_file"), str):
            raise bad("'data_file' must be a string")
        return spec
    inputs = spec.get("inputs")
    if not isinstance(inputs, dict):
        raise bad("external mode needs an 'inputs' object")
    for key in ("X_train", "model"):
        if not isinstance(inputs.get(key), str):
            raise bad(f"inputs.{key} must be a path")
    for key in ("y_train", "model_output"):
        if inputs.get(key) is not None and not isinstance(inputs[key], str):
            raise bad(f"inputs.{key} must be a path or null")
    if inputs.get("params") is not None and not isinstance(inputs["params"], dict):
        raise bad("inputs.params must be an object or null")
    return spec


# ------------------------------------------------------------------------------ run


class _Run:
    def __init__(self, runner, spec):
        self.r = runner
        self.spec = spec
        self.model_type = spec["model_type"]
        self.out_dir = spec["out_dir"]
        self.warnings = []
        self.pd = self.np = self.cloudpickle = None

    # ------------------------------------------------------------------ the two modes

    def custom(self, source, entrypoint):
        spec = self.spec
        base_path = spec["base_path"]
        data_file = spec["data_file"]
        # Set before the import too: module-level code may read it.
        os.environ["inputFileName"] = data_file  # noqa: SIM112  (the product's name for it)
        os.chdir(base_path)
        self._import_libraries()
        func = self.r.load_entrypoint(source, entrypoint)
        two_parameters = self._contract(func, entrypoint)
        what = f"the training function {entrypoint!r}"
        if two_parameters:
            df = self._read_table(os.path.join(base_path, data_file), f"the training data {data_file!r}")
            value = self._guard("call", what + " raised", func, df, base_path)
        else:
            value = self._guard("call", what + " raised", func, base_path)

        if not isinstance(value, dict):
            raise self._error(
                "result",
                f"TypeError: {what} must return a dict with the keys {_KEYS_TEXT}; "
                f"it returned a {_type_name(value)}",
            )
        required = ["X_train", "model_output", "pipeline", "metrics"]
        if self.model_type != "Unsupervised":
            required.insert(1, "y_train")
        missing = [key for key in required if key not in value]
        if missing:
            raise self._error(
                "result",
                f"KeyError: the dict returned by {what} has no {_names(missing)} "
                f"{'key' if len(missing) == 1 else 'keys'}; it must contain {_KEYS_TEXT}",
            )
        if value["pipeline"] is None:
            raise self._error("result", "ValueError: 'pipeline' is None; return the fitted model object")
        X, y, output = self._tables(value["X_train"], value.get("y_train"), value["model_output"], True)
        metrics = self._metrics(value["metrics"])
        extras = self._extras(value, base_path)

        params = self._params(X, y, value["pipeline"])
        self._write_tables(X, y, output)
        saved_with = self._save_model(value["pipeline"], source)
        self._write_json(metrics, params)
        contract = "df, base_path" if two_parameters else "base_path"
        return self._summary(metrics, params, extras, X, y, output, saved_with, contract)

    def external(self):
        inputs = self.spec["inputs"]
        if self.spec.get("base_path"):
            os.chdir(self.spec["base_path"])
        self._import_libraries()
        X = self._read_table(inputs["X_train"], "X_train")
        y = self._read_table(inputs["y_train"], "y_train") if inputs.get("y_train") else None
        output = (
            self._read_table(inputs["model_output"], "model_output") if inputs.get("model_output") else None
        )
        model = self._load_model(inputs["model"])
        X, y, output = self._tables(X, y, output, False)
        metrics = self._metrics(inputs.get("metrics"))

        params = self._params(X, y, model)
        params["logged"] = _json_safe(inputs.get("params") or {})
        self._write_tables(X, y, output)
        target = os.path.join(self.out_dir, "model.pkl")
        if not (os.path.exists(target) and os.path.samefile(inputs["model"], target)):
            # The user's bytes, not a re-pickle: what they trained is what gets served.
            self._guard(
                "save", "could not copy the model file to model.pkl", shutil.copyfile, inputs["model"], target
            )
        self._write_json(metrics, params)
        return self._summary(metrics, params, [], X, y, output, "copy", "external")

    def _summary(self, metrics, params, extras, X, y, output, saved_with, contract):
        return {
            "metrics": metrics,
            "params": params,
            "extras": extras,
            "shapes": {
                "X_train": list(X.shape),
                "y_train": list(y.shape) if y is not None else None,
                "model_output": list(output.shape) if output is not None else None,
            },
            "model_saved_with": saved_with,
            "contract": contract,
            "warnings": self.warnings,
        }

    # ------------------------------------------------------------------ helpers

    def _error(self, phase, message, tb=None):
        return self.r._UserError(phase, message, tb)

    def _guard(self, phase, what, func, *args):
        """Run code that may fail (the user's, a library's); a failure names ``what``."""
        try:
            return func(*args)
        except self.r._UserError:
            raise
        # User code may raise anything, SystemExit and KeyboardInterrupt included.
        except BaseException as exc:
            raise self._error(phase, f"{what}: {self.r._describe(exc)}", self.r._user_traceback(exc)) from exc

    def _warn(self, message):
        self.warnings.append(message)
        sys.stderr.write(f"neomaril: warning: {message}\n")

    def _import_libraries(self):
        for name in LIBRARIES:
            try:
                module = importlib.import_module(name)
            except Exception as exc:
                raise self._error(
                    "import",
                    f"ModuleNotFoundError: the training environment cannot import {name} "
                    f"({self.r._describe(exc)}); the platform adds {', '.join(LIBRARIES)} to every "
                    f"training environment: rebuild it, or add {name} to requirements.txt",
                    self.r._user_traceback(exc),
                ) from exc
            if name == "pandas":
                self.pd = module
            elif name == "cloudpickle":
                self.cloudpickle = module
        self.np = importlib.import_module("numpy")  # a dependency of pandas

    def _contract(self, func, entrypoint):
        """True for ``train_model(df, base_path)``, False for the older ``train_model(base_path)``."""
        try:
            parameters = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):  # no signature (a C function): assume the current contract
            return True
        positional = 0
        for p in parameters:
            if p.kind == p.VAR_POSITIONAL:
                return True
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                positional += 1
        if positional == 0:
            raise self._error(
                "import",
                f"TypeError: the training function {entrypoint!r} takes no parameters; it must accept "
                "(df, base_path): the training data as a DataFrame and the folder of the uploaded files "
                "(or the older (base_path) form)",
            )
        return positional >= 2

    def _read_table(self, path, what):
        extension = os.path.splitext(path)[1].lower()
        if extension not in (".csv", ".parquet"):
            raise self._error("data", f"ValueError: {what} ({path}) must be a .csv or a .parquet file")
        if not os.path.isfile(path):
            raise self._error("data", f"FileNotFoundError: {what} ({path}) does not exist")
        read = self.pd.read_csv if extension == ".csv" else self.pd.read_parquet
        return self._guard("data", f"could not read {what} ({path})", read, path)

    def _load_model(self, path):
        # Phase "call", not "data": the platform reports a "data" failure as one reading the
        # training data, and unpickling runs the user's code much as a training call does.
        if not os.path.isfile(path):
            raise self._error("call", f"FileNotFoundError: the model file ({path}) does not exist")

        def load():
            with open(path, "rb") as f:
                return self.cloudpickle.load(f)

        return self._guard(
            "call",
            f"the model file ({os.path.basename(path)}) could not be loaded in this environment "
            "(are its requirements those it was trained with?)",
            load,
        )

    # ------------------------------------------------------------------ validation

    def _tables(self, X, y, output, output_required):
        X = self._frame(X, "X_train")
        if y is None and self.model_type != "Unsupervised":
            raise self._error(
                "result",
                f"ValueError: y_train is None, but a {self.model_type} model needs its targets "
                "(only Unsupervised models may leave y_train out)",
            )
        y = self._frame(y, "y_train") if y is not None else None
        if output is None and output_required:
            raise self._error(
                "result", "ValueError: model_output is None; return the model's outputs on X_train"
            )
        output = self._frame(output, "model_output") if output is not None else None
        for name, frame in (("y_train", y), ("model_output", output)):
            if frame is not None and len(frame) != len(X):
                raise self._error(
                    "result",
                    f"ValueError: {name} has {len(frame)} rows but X_train has {len(X)}; "
                    "they must have one row per training example",
                )
        return X, y, output

    def _frame(self, value, name):
        """``value`` as a DataFrame with string column names, or a "result" error naming ``name``."""
        pd = self.pd
        expected = "a DataFrame or a 2-D array" if name == "X_train" else "a DataFrame, an array or a Series"
        if isinstance(value, pd.DataFrame):
            frame = value
        elif isinstance(value, pd.Series):
            if name == "X_train":
                raise self._error(
                    "result", f"TypeError: X_train must be {expected}, not a Series (use series.to_frame())"
                )
            frame = value.to_frame(name=name if value.name is None else value.name)
        else:
            if value is None or isinstance(value, (str, bytes, dict)):
                raise self._error(
                    "result", f"TypeError: {name} must be {expected}; it is a {_type_name(value)}"
                )
            if callable(getattr(value, "toarray", None)):  # scipy.sparse
                value = self._guard("result", f"could not turn {name} into an array", value.toarray)
            array = self._guard("result", f"could not turn {name} into an array", self.np.asarray, value)
            if array.ndim == 2:
                frame = pd.DataFrame(array, columns=[str(i) for i in range(array.shape[1])])
            elif array.ndim == 1 and name != "X_train":
                frame = pd.DataFrame({name: array})
            else:
                raise self._error(
                    "result",
                    f"TypeError: {name} must be {expected}; it is a {_type_name(value)} "
                    f"with {array.ndim} dimension(s)",
                )
        if not all(isinstance(column, str) for column in frame.columns):
            frame = frame.copy(deep=False)
            frame.columns = [str(column) for column in frame.columns]
        return frame

    def _metrics(self, value):
        if not isinstance(value, dict):
            raise self._error(
                "result",
                f"TypeError: metrics must be a dict of metric name to number; it is a {_type_name(value)}",
            )
        metrics = {}
        for key, raw in value.items():
            name = str(key)
            number = raw
            if type(raw).__module__ == "numpy" and callable(getattr(raw, "item", None)):
                with contextlib.suppress(ValueError, TypeError):  # an array of several values
                    number = raw.item()
            if number is None:
                # No value: what NaN and infinity are stored as (an External run's form has
                # already turned them into null), kept so.
                metrics[name] = None
                continue
            if isinstance(number, bool):
                raise self._error(
                    "result", f"TypeError: metric {name!r} is a bool ({number}); metrics must be numbers"
                )
            if not isinstance(number, numbers.Real):
                raise self._error(
                    "result",
                    f"TypeError: metric {name!r} is a {_type_name(raw)}, not a number ({_short_repr(raw)})",
                )
            if isinstance(number, numbers.Integral):
                metrics[name] = int(number)
                continue
            number = float(number)
            if not math.isfinite(number):
                self._warn(f"metric {name!r} is {number}; stored as null")
                metrics[name] = None
            else:
                metrics[name] = number
        return metrics

    def _extras(self, value, base_path):
        key = "extra" if value.get("extra") is not None else "extras"
        if value.get("extra") is not None and value.get("extras") is not None:
            raise self._error(
                "result", "ValueError: give the extra files once, as 'extra' or as 'extras', not both"
            )
        items = value.get(key)
        if items is None:
            return []
        if isinstance(items, (str, os.PathLike)):
            items = [items]
        if not isinstance(items, (list, tuple)):
            raise self._error(
                "result",
                f"TypeError: {key} must be a list of files written in base_path; it is a {_type_name(items)}",
            )
        root = os.path.realpath(base_path)
        names = []
        for item in items:
            if not isinstance(item, (str, os.PathLike)) or not isinstance(os.fspath(item), str):
                raise self._error(
                    "result",
                    f"TypeError: {key} must list file names; {_short_repr(item)} is a {_type_name(item)}",
                )
            given = os.fspath(item)
            path = os.path.realpath(os.path.join(base_path, given))  # an absolute path stays itself
            if os.path.commonpath([root, path]) != root or path == root:
                raise self._error(
                    "result",
                    f"ValueError: extra file {given!r} is outside base_path ({base_path}); "
                    "only files written inside base_path can be kept",
                )
            if not os.path.exists(path):
                raise self._error(
                    "result", f"FileNotFoundError: extra file {given!r} does not exist in base_path"
                )
            if not os.path.isfile(path):
                raise self._error("result", f"ValueError: extra file {given!r} is not a regular file")
            name = os.path.relpath(path, root).replace(os.sep, "/")
            if name not in names:
                names.append(name)
        return names

    # ------------------------------------------------------------------ params.json

    def _params(self, X, y, pipeline):
        shares = X.isna().mean() if len(X) else {}
        params = {
            "shape": {"rows": int(X.shape[0]), "columns": int(X.shape[1])},
            "columns": list(X.columns),
            "missing": {column: round(float(share), 4) for column, share in shares.items() if share > 0},
            "pipeline": self._describe_pipeline(pipeline),
        }
        target = self._target(y)
        if target is not None:
            params["target"] = target
        return params

    def _describe_object(self, obj):
        described = {"class": _qualified(type(obj))}
        try:
            get_params = getattr(obj, "get_params", None)
            if callable(get_params):
                described["params"] = _json_safe(dict(get_params(deep=False)))
        except Exception as exc:  # the user's object: describe less rather than fail the run
            self._warn(f"could not read the parameters of {described['class']}: {self.r._describe(exc)}")
        return described

    def _describe_pipeline(self, pipeline):
        described = self._describe_object(pipeline)
        try:
            steps = getattr(pipeline, "steps", None)
        except Exception:
            steps = None
        if isinstance(steps, list) and all(
            isinstance(step, tuple) and len(step) >= 2 and isinstance(step[0], str) for step in steps
        ):
            described["steps"] = []
            for step in steps:
                name, obj = step[0], step[1]
                if obj is None or isinstance(obj, str):  # "passthrough" / "drop"
                    described["steps"].append({"name": name, "class": str(obj)})
                else:
                    described["steps"].append(dict({"name": name}, **self._describe_object(obj)))
        return described

    def _target(self, y):
        if y is None or self.model_type == "Unsupervised":
            return None
        kind = "proportions" if self.model_type == "Classification" else "distribution"
        describe = self._proportions if kind == "proportions" else self._distribution
        if y.shape[1] == 1:
            values = describe(y.iloc[:, 0])
            return dict({"kind": kind}, **values) if values is not None else None
        columns = {}
        for column in y.columns:
            values = describe(y[column])
            if values is not None:
                columns[column] = values
        return {"kind": kind, "columns": columns}

    def _proportions(self, series):
        shares = series.value_counts(dropna=False, normalize=True)
        with contextlib.suppress(TypeError):  # labels of mixed types: keep the count order
            shares = shares.sort_index()
        values = {}
        for label, share in shares.items():
            values["null" if _is_missing(label) else str(label)] = round(float(share), 6)
        return {"values": values}

    def _distribution(self, series):
        if not self.pd.api.types.is_numeric_dtype(series) or self.pd.api.types.is_bool_dtype(series):
            self._warn(f"y_train column {series.name!r} is not numeric; its distribution is not described")
            return None
        stats = series.describe(percentiles=[0.25, 0.5, 0.75])
        names = (("count", "count"), ("mean", "mean"), ("std", "std"), ("min", "min"))
        names += (("p25", "25%"), ("p50", "50%"), ("p75", "75%"), ("max", "max"))
        values = {}
        for key, label in names:
            number = float(stats[label])
            values[key] = None if not math.isfinite(number) else number
        values["count"] = int(values["count"] or 0)
        return values

    # ------------------------------------------------------------------ artifacts

    def _write_tables(self, X, y, output):
        for name, frame in (("X_train", X), ("y_train", y), ("model_output", output)):
            if frame is None:
                continue
            path = os.path.join(self.out_dir, name + ".parquet")
            try:
                frame.to_parquet(path, index=False)
            except Exception as exc:
                _remove(path)
                hint = ""
                if type(exc).__name__.startswith("Arrow"):
                    hint = " (a column mixing types can be made uniform with .astype(str))"
                raise self._error(
                    "save",
                    f"could not save {name} as {name}.parquet: {self.r._describe(exc)}{hint}",
                    self.r._user_traceback(exc),
                ) from exc

    def _save_model(self, pipeline, source):
        path = os.path.join(self.out_dir, "model.pkl")
        save_model = self._guard(
            "save", "could not inspect the pipeline", getattr, pipeline, "save_model", None
        )
        if callable(save_model):
            self._guard("save", "the pipeline's save_model(path) failed writing model.pkl", save_model, path)
            if not os.path.isfile(path):
                raise self._error(
                    "save",
                    f"FileNotFoundError: the pipeline's save_model(path) did not write model.pkl ({path})",
                )
            return "save_model"
        self._pickle_user_code_by_value(source)

        def dump():
            with open(path, "wb") as f:
                self.cloudpickle.dump(pipeline, f)

        try:
            self._guard("save", "could not pickle the pipeline into model.pkl", dump)
        except self.r._UserError:
            _remove(path)
            raise
        return "cloudpickle"

    def _pickle_user_code_by_value(self, source):
        # Classes and functions of the training script (and its helper modules) go into the
        # pickle itself: the model that serves it has its own app.py, not this one.
        register = getattr(self.cloudpickle, "register_pickle_by_value", None)
        if register is None:
            return
        folders = {os.path.realpath(os.path.dirname(source)), os.path.realpath(self.spec["base_path"])}
        for name, module in list(sys.modules.items()):
            filename = getattr(module, "__file__", None)
            if not filename or name == "__main__" or "." in name:
                continue
            if os.path.dirname(os.path.realpath(filename)) in folders:
                # Not worth failing a run over: the module then pickles by reference.
                with contextlib.suppress(Exception):
                    register(module)

    def _write_json(self, metrics, params):
        for name, data in (("metrics.json", metrics), ("params.json", params)):
            with open(os.path.join(self.out_dir, name), "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, ensure_ascii=False, allow_nan=False)
                f.write("\n")


# ------------------------------------------------------------------------ JSON safety


def _json_safe(value, depth=0):
    """Plain JSON data; anything else becomes its repr (addresses removed, so it is deterministic)."""
    if depth > _MAX_DEPTH:
        return _short_repr(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(float(value))
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        with contextlib.suppress(Exception):
            return _json_safe(value.item(), depth + 1)
    if isinstance(value, type) or inspect.isroutine(value):
        return _qualified(value)
    return _short_repr(value)


def _qualified(obj):
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return f"{module}.{name}" if module and module != "builtins" else name


def _short_repr(value):
    try:
        text = repr(value)
    except Exception:
        text = f"<{_type_name(value)} object>"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _type_name(value):
    return _qualified(type(value))


def _names(keys):
    return ", ".join(repr(key) for key in keys)


def _is_missing(value):
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NaTType", "NAType")


def _remove(path):
    with contextlib.suppress(OSError):
        os.remove(path)
