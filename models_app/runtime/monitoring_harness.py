"""Neomaril monitoring harness: the in-sandbox half of monitoring, loaded by runner.py for kind "monitor".

The runner executes it in the monitor's own environment, so it keeps the runner's rules:
no import of the platform's packages and nothing newer than Python 3.8. pandas (and
pyarrow, to read the reference's parquet files) are imported only here, when a job
starts, and a missing one is named instead of failing obscurely.

``monitor(runner, source, entrypoint, spec_json)`` loads the user's module once (the
preprocess function ``entrypoint`` and the optional SHAP function come from the same
file), then works in one of two modes (the spec is described in ``_parse_spec``):

``validate``
    Checks the configured columns against the training run's reference tables, calls
    the preprocess (and the SHAP function) on the model's sample call, and writes the
    reference's values of the needed columns to ``out_file``.
``period``
    Calls the preprocess once per recorded call of ``records_file`` (a call that fails is
    skipped and counted), the SHAP function once on all the features, and writes the
    features, outputs and SHAP sums to ``out_file``.

The preprocess is ``preprocess(input, output)``: for a Sync model the call's request and
answer as JSON strings, for an Async one the paths of its input and result files. It
returns ``(features, outputs)``, two pandas DataFrames. The SHAP function is
``shap(features, model_path)`` on the features' ``input_cols`` and returns a DataFrame
with a column per input column. Every failure is raised as the runner's ``_UserError``
with its phase: "config" (a configured column is missing), "data" (reading the
reference), "import", "call" (the user's function raised), "result" (it returned
something else), or "protocol" for a bad spec.
"""

import contextlib
import datetime
import decimal
import importlib
import json
import math
import os
import sys

MODES = ("validate", "period")
OPERATIONS = ("sync", "async")
# Per-record failures of a period: how many messages are kept (the rest are only counted).
MAX_ERRORS = 5
# Column names shown when a configured column is missing.
_SHOWN_COLUMNS = 20
_REPR_CHARS = 200


def monitor(runner, source, entrypoint, spec_json):
    """Run the job the spec describes; return the result frame's ``result``."""
    spec = _parse_spec(runner, spec_json)
    job = _Job(runner, spec)
    job.import_pandas()
    if spec["mode"] == "validate":
        job.load_reference()  # the configuration is checked before any user code runs
    job.load_functions(source, entrypoint)
    if spec["mode"] == "validate":
        return job.validate()
    return job.period()


# ----------------------------------------------------------------------------- spec


def _parse_spec(runner, spec_json):
    """The platform's request; a bad one is the platform's bug (phase "protocol")."""

    def bad(message):
        return runner._UserError("protocol", "ProtocolError: monitoring spec: " + message)

    try:
        spec = json.loads(spec_json)
    except ValueError as exc:
        raise bad(f"not JSON ({exc})") from exc
    if not isinstance(spec, dict):
        raise bad("must be a JSON object")
    if spec.get("mode") not in MODES:
        raise bad(f"'mode' must be one of {', '.join(MODES)}, not {spec.get('mode')!r}")
    if spec.get("operation") not in OPERATIONS:
        raise bad(f"'operation' must be one of {', '.join(OPERATIONS)}, not {spec.get('operation')!r}")
    for key in ("input_cols", "output_cols"):
        value = spec.get(key)
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise bad(f"'{key}' must be a list of column names")
    if not spec["input_cols"]:
        raise bad("'input_cols' must name at least one column")
    for key in ("model_path", "out_file"):
        if not isinstance(spec.get(key), str):
            raise bad(f"'{key}' must be a path")
    if spec.get("shap_entrypoint") is not None and not isinstance(spec["shap_entrypoint"], str):
        raise bad("'shap_entrypoint' must be a string or null")
    if spec["mode"] == "validate":
        reference = spec.get("reference")
        if not isinstance(reference, dict) or not all(
            isinstance(reference.get(key), str) for key in ("X_train", "model_output")
        ):
            raise bad('\'reference\' must be {"X_train": path, "model_output": path}')
        sample = spec.get("sample")
        if not isinstance(sample, dict) or not all(
            isinstance(sample.get(k), str) for k in ("input", "output")
        ):
            raise bad('\'sample\' must be {"input": str, "output": str}')
        if spec.get("date_col") is not None and not isinstance(spec["date_col"], str):
            raise bad("'date_col' must be a string or null")
    elif not isinstance(spec.get("records_file"), str) or not os.path.isfile(spec["records_file"]):
        raise bad(f"'records_file' must be an existing file, not {spec.get('records_file')!r}")
    return spec


# ------------------------------------------------------------------------------ job


class _Job:
    def __init__(self, runner, spec):
        self.r = runner
        self.spec = spec
        self.input_cols = spec["input_cols"]
        self.output_cols = spec["output_cols"]
        self.preprocess_name = None
        self.shap_name = spec.get("shap_entrypoint") or None
        self.preprocess = self.shap = None
        self.X = self.model_output = None
        self.pd = None

    # ------------------------------------------------------------------ setup

    def _error(self, phase, message, tb=None):
        return self.r._UserError(phase, message, tb)

    def import_pandas(self):
        self.pd = self._import_library("pandas")

    def _import_library(self, name):
        try:
            return importlib.import_module(name)
        except Exception as exc:
            raise self._error(
                "import",
                f"ModuleNotFoundError: the monitoring environment cannot import {name} "
                f"({self.r._describe(exc)}); monitoring needs pandas, and pyarrow to read the "
                f"training run's parquet files: add {name} to the monitoring requirements",
                self.r._user_traceback(exc),
            ) from exc

    def load_functions(self, source, entrypoint):
        """Import the user's file once; both functions come from it."""
        module = self.r._import_source(source)
        self.preprocess_name = entrypoint
        self.preprocess = self.r._guard("import", self.r._resolve_entrypoint, module, entrypoint)
        if self.shap_name:
            self.shap = self.r._guard("import", self.r._resolve_entrypoint, module, self.shap_name)

    def load_reference(self):
        reference = self.spec["reference"]
        self.X = self._read_table(reference["X_train"], "X_train")
        self.model_output = self._read_table(reference["model_output"], "model_output")
        what = "the training run's X_train"
        self._require(self.X, self.input_cols, "InputCols", what)
        self.date_range = None
        if self.spec.get("date_col"):
            self._require(self.X, [self.spec["date_col"]], "TrainDateCol", what)
            self.date_range = self._date_range(self.X[self.spec["date_col"]])
        self._require(self.model_output, self.output_cols, "OutputCols", "the training run's model_output")

    def _read_table(self, path, what):
        extension = os.path.splitext(path)[1].lower()
        if extension not in (".csv", ".parquet"):
            raise self._error(
                "data", f"ValueError: the reference {what} ({path}) must be a .csv or .parquet file"
            )
        if not os.path.isfile(path):
            raise self._error("data", f"FileNotFoundError: the reference {what} ({path}) does not exist")
        if extension == ".parquet":
            self._import_library("pyarrow")
            read = self.pd.read_parquet
        else:
            read = self.pd.read_csv
        frame = self._guard(
            "data", f"could not read the reference {what} ({os.path.basename(path)})", read, path
        )
        return _string_columns(frame)

    # ------------------------------------------------------------------ the two modes

    def validate(self):
        sample = self.spec["sample"]
        features, outputs = self._call_preprocess(sample["input"], sample["output"])
        features, outputs = features[self.input_cols], outputs[self.output_cols]
        if self.shap is not None:
            self._call_shap(features)
        X, output = self.X, self.model_output
        data = {
            "inputs": {col: _column_values(X[col]) for col in self.input_cols},
            "outputs": {col: _column_values(output[col]) for col in self.output_cols},
            "rows": int(len(X)),
            "date_range": self.date_range,
        }
        self._write(data)
        return {
            "rows": int(len(X)),
            "features": [_first_row(features)] if len(features) else [],
            "outputs": [_first_row(outputs)] if len(outputs) else [],
        }

    def period(self):
        records = self._read_records()
        feature_frames, output_frames = [], []
        errors, skipped = [], 0
        first_failure = None
        for number, record in enumerate(records, 1):
            try:
                features, outputs = self._call_preprocess(record["input"], record["output"])
            except self.r._UserError as err:
                skipped += 1
                message = f"record {number}: {err.error}"
                if first_failure is None:
                    first_failure = (message, err.traceback)
                if len(errors) < MAX_ERRORS:
                    errors.append(message)
                    sys.stderr.write(f"neomaril: skipped {message}\n")
                continue
            feature_frames.append(features)
            output_frames.append(outputs)
        if records and skipped == len(records):
            message, tb = first_failure
            raise self._error("call", f"every record failed; the first: {message}", tb)

        pd = self.pd
        # Selected once, after the concatenation: per record it cost more than the preprocess.
        features = (
            pd.concat(feature_frames, ignore_index=True)[self.input_cols]
            if feature_frames
            else pd.DataFrame({col: [] for col in self.input_cols})
        )
        outputs = (
            pd.concat(output_frames, ignore_index=True)[self.output_cols]
            if output_frames
            else pd.DataFrame({col: [] for col in self.output_cols})
        )
        shap = None
        if self.shap is not None:
            shap = {col: {"sum_abs": 0.0, "n": 0} for col in self.input_cols}
            if len(features):
                values = self._call_shap(features)
                for col in self.input_cols:
                    column = values[col]
                    total = float(column.abs().sum())
                    shap[col] = {
                        "sum_abs": total if math.isfinite(total) else None,
                        "n": int(column.notna().sum()),
                    }
        rows = int(len(features))
        self._write(
            {
                "inputs": {col: _column_values(features[col]) for col in self.input_cols},
                "outputs": {col: _column_values(outputs[col]) for col in self.output_cols},
                "rows": rows,
                "records": len(records),
                "skipped": skipped,
                "errors": errors,
                "shap": shap,
            }
        )
        return {"rows": rows, "records": len(records), "skipped": skipped}

    # ------------------------------------------------------------------ user code

    def _guard(self, phase, what, func, *args):
        """Run code that may fail (the user's, a library's); a failure names ``what``."""
        try:
            return func(*args)
        except self.r._UserError:
            raise
        # User code may raise anything, SystemExit and KeyboardInterrupt included.
        except BaseException as exc:
            raise self._error(phase, f"{what}: {self.r._describe(exc)}", self.r._user_traceback(exc)) from exc

    def _call_preprocess(self, given_input, given_output):
        what = f"the preprocess function {self.preprocess_name!r}"
        value = self._guard("call", what + " raised", self.preprocess, given_input, given_output)
        pd = self.pd
        if not (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(isinstance(part, pd.DataFrame) for part in value)
        ):
            raise self._error(
                "result",
                f"TypeError: {what} must return a 2-tuple (features, outputs) of pandas DataFrames; "
                f"it returned {_describe_value(value)}",
            )
        features, outputs = (_string_columns(part) for part in value)
        self._require(features, self.input_cols, "InputCols", "the preprocess output", "its features have")
        self._require(outputs, self.output_cols, "OutputCols", "the preprocess output", "its outputs have")
        return features, outputs

    def _call_shap(self, features):
        what = f"the SHAP function {self.shap_name!r}"
        value = self._guard(
            "call", what + " raised", self.shap, features[self.input_cols].copy(), self.spec["model_path"]
        )
        if not isinstance(value, self.pd.DataFrame):
            raise self._error(
                "result",
                f"TypeError: {what} must return a pandas DataFrame with a column per input column; "
                f"it returned {_describe_value(value)}",
            )
        value = _string_columns(value)
        self._require(value, self.input_cols, "InputCols", "the SHAP output")
        value = value[self.input_cols]
        for col in self.input_cols:
            column = value[col]
            if not self.pd.api.types.is_numeric_dtype(column) or self.pd.api.types.is_bool_dtype(column):
                raise self._error(
                    "result",
                    f"TypeError: {what} returned non-numeric SHAP values in column {col!r} "
                    f"(dtype {column.dtype}); SHAP values must be numbers",
                )
        return value

    # ------------------------------------------------------------------ helpers

    def _require(self, frame, columns, key, what, has="it has"):
        """A "config" error naming the configuration key when ``frame`` lacks a configured column."""
        present = list(frame.columns)
        missing = [col for col in columns if col not in present]
        if missing:
            shown = ", ".join(repr(col) for col in present[:_SHOWN_COLUMNS])
            if len(present) > _SHOWN_COLUMNS:
                shown += f", … ({len(present) - _SHOWN_COLUMNS} more)"
            raise self._error(
                "config",
                f"{what} lacks {key} {', '.join(repr(col) for col in missing)} "
                f"({has}: {shown or 'no columns'})",
            )
        duplicated = sorted({col for col in columns if present.count(col) > 1})
        if duplicated:
            raise self._error(
                "data" if what.startswith("the training run") else "result",
                f"ValueError: {what} has the column {', '.join(repr(c) for c in duplicated)} more than once",
            )

    def _date_range(self, column):
        """The TrainDateCol's first and last dates; a config error when it holds other values
        (numbers would read as nanoseconds after 1970, a range that means nothing)."""
        pd = self.pd
        if not pd.api.types.is_datetime64_any_dtype(column):
            present = column.dropna()
            if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
                example = f", e.g. {_plain(present.iloc[0])!r}" if len(present) else ""
                raise self._error(
                    "config",
                    f"the training run's X_train column {column.name!r} (TrainDateCol) holds "
                    f"{column.dtype} values, not dates{example}",
                )
            try:
                parsed = pd.to_datetime(column, errors="coerce")
            except Exception:  # e.g. offsets mixed with naive times
                parsed = pd.Series(pd.NaT, index=column.index)
            bad = column.notna() & parsed.isna()
            if bad.any():
                raise self._error(
                    "config",
                    f"the training run's X_train column {column.name!r} (TrainDateCol) has "
                    f"{int(bad.sum())} value(s) that are not dates, e.g. {_plain(column[bad].iloc[0])!r}",
                )
            column = parsed
        present = column.dropna()
        if not len(present):
            return None
        with contextlib.suppress(TypeError):  # values that don't compare: no range
            return [_plain(present.min()), _plain(present.max())]
        return None

    def _read_records(self):
        path = self.spec["records_file"]
        records = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise self._error(
                        "protocol", f"ProtocolError: records file line {number} is not JSON ({exc})"
                    ) from exc
                if not (
                    isinstance(record, dict)
                    and isinstance(record.get("input"), str)
                    and isinstance(record.get("output"), str)
                ):
                    raise self._error(
                        "protocol",
                        f'ProtocolError: records file line {number} must be {{"input": str, "output": str}}',
                    )
                records.append(record)
        return records

    def _write(self, data):
        # ±inf are written as Infinity (Python's json reads them back): drift puts them in the outer bins.
        with open(self.spec["out_file"], "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, allow_nan=True, separators=(",", ":"))


# ------------------------------------------------------------------------ JSON safety


def _string_columns(frame):
    if all(isinstance(column, str) for column in frame.columns):
        return frame
    frame = frame.copy(deep=False)
    frame.columns = [str(column) for column in frame.columns]
    return frame


def _column_values(series):
    return [_plain(value) for value in series.tolist()]


def _first_row(frame):
    # Column by column: a row of mixed dtypes would turn its ints into floats.
    return {col: _plain(frame[col].iloc[0]) for col in frame.columns}


def _plain(value):
    """One cell as JSON data: missing → None, numpy → Python, dates → ISO text, anything else → str."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if type(value).__name__ in ("NaTType", "NAType"):  # before datetime: pandas.NaT is one
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (datetime.date, datetime.time)):  # pandas.Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return _plain(float(value))
    if type(value).__module__ == "numpy":
        if type(value).__name__.startswith("datetime64"):
            with contextlib.suppress(Exception):
                return _plain(value.astype("datetime64[us]").item())
        if getattr(value, "ndim", None) == 0:
            with contextlib.suppress(Exception):
                item = value.item()
                if type(item).__module__ != "numpy":
                    return _plain(item)
    return str(value)


def _describe_value(value):
    """What a function returned, in words: "a dict", "a tuple of 2 (a pandas...DataFrame, a list)"."""
    if isinstance(value, (tuple, list)):
        parts = ", ".join(_a_type(part) for part in value[:3])
        more = ", …" if len(value) > 3 else ""
        return f"{_a_type(value)} of {len(value)} ({parts}{more})"
    return _a_type(value)


def _a_type(value):
    if value is None:
        return "None"
    cls = type(value)
    module = getattr(cls, "__module__", "builtins")
    return "a " + (cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}")
