"""Train models on Neomaril and promote them: experiments, runs, and ``log_train``.

An *experiment* groups the runs of one modelling question (a name, a group and a model
type); a *run* is one training. **Custom** runs call your ``train_model`` function on
the server, in an environment built from your ``requirements.txt``; **External** runs
register a model you trained elsewhere (its pickle, ``X_train``, ``y_train``, its
outputs and metrics); **AutoML** runs search a pipeline for your data with the
platform's own code, configured by the original ``conf.json``. A Succeeded run can be
promoted to a deployed model.

.. code:: python

    from neomaril_codex.training import NeomarilTrainingClient

    client = NeomarilTrainingClient()  # NEOMARIL_URL + NEOMARIL_USER/NEOMARIL_PASSWORD (or NEOMARIL_TOKEN)
    training = client.create_training_experiment('Teste', 'Classification', group='datarisk')
    run = training.run_training('First test', train_data=PATH+'dados.csv', source_file=PATH+'train.py',
                                requirements_file=PATH+'requirements.txt', python_version='3.9',
                                wait_complete=True)
    model = run.promote_model('Teste notebook promoted custom', 'score', PATH+'app.py',
                              schema=PATH+'schema.json', operation="Sync")

pandas, numpy, pyarrow and cloudpickle are imported only when you hand the SDK such
objects: the SDK itself needs nothing but ``requests``.
"""

from __future__ import annotations

import _compat_pickle
import collections
import contextlib
import importlib.util
import logging
import os
import pickle
import pickletools
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from neomaril_codex._args import whole_number
from neomaril_codex._http import Connection, dumps, json_of
from neomaril_codex._http import env as _env
from neomaril_codex._parts import Parts, PathLike, existing_file
from neomaril_codex.base import BaseNeomarilClient, failure_with_log, wait_finished
from neomaril_codex.exceptions import ExecutionError, InputError, NotFoundError, TrainingRunError
from neomaril_codex.model import OPERATIONS, NeomarilModel, NeomarilModelVersion, _model_parts

__all__ = [
    "NeomarilTrainingClient",
    "NeomarilTrainingExecution",
    "NeomarilTrainingExperiment",
    "NeomarilTrainingLogger",
    "requirements_from_pickle",
]

logger = logging.getLogger(__name__)

MODEL_TYPES = {"classification": "Classification", "regression": "Regression", "unsupervised": "Unsupervised"}
TRAINING_TYPES = {"custom": "Custom", "external": "External", "automl": "AutoML"}
TABLE_SUFFIXES = (".csv", ".parquet")
# The optional arguments of run_training each kind of run uses (the server refuses the others).
USED_BY = {
    "Custom": ("train_data", "source_file", "training_reference", "requirements_file", "extra_files", "env"),
    "External": (
        "X_train",
        "y_train",
        "model_outputs",
        "model_file",
        "model_metrics",
        "model_params",
        "requirements_file",
        "extra_files",
        "env",
    ),
    "AutoML": ("train_data", "conf_dict"),
}


def _choice(value: Any, choices: Dict[str, str]) -> Optional[str]:
    """The canonical spelling of `value` among `choices` (case-insensitive), or None."""
    return choices.get(str(value).strip().lower()) if value is not None else None


def _experiment_path(training_id: str) -> str:
    return f"/training/experiments/{training_id}"


# Tables ------------------------------------------------------------------------------------


def _write_table(argument: str, value: Any, folder: Path, stem: str) -> Path:
    """A DataFrame, Series, array or list written as a table file in `folder`: parquet
    when pyarrow is importable (it keeps the column types), else CSV."""
    if hasattr(value, "to_frame") and not hasattr(value, "columns"):  # a pandas Series
        value = value.to_frame()
    if not hasattr(value, "columns"):
        try:
            import pandas as pd  # only when the user hands us an array or a list
        except ImportError:
            return _write_csv_without_pandas(argument, value, folder / f"{stem}.csv")
        try:
            value = pd.DataFrame(value)
        except (TypeError, ValueError):
            raise InputError(_not_a_table(argument, value)) from None
    frame = value.copy(deep=False)
    frame.columns = [str(column) for column in frame.columns]  # parquet wants text names
    if importlib.util.find_spec("pyarrow") is not None:
        target = folder / f"{stem}.parquet"
        try:
            frame.to_parquet(target, index=False)
            return target
        except Exception as exc:  # e.g. mixed types in an object column: CSV takes anything
            logger.debug("%s could not be written as parquet (%s); writing CSV", argument, exc)
            target.unlink(missing_ok=True)
    target = folder / f"{stem}.csv"
    frame.to_csv(target, index=False)
    return target


def _not_a_table(argument: str, value: Any) -> str:
    return (
        f"{argument}: expected a file path (.csv or .parquet), a pandas DataFrame or Series, "
        f"or an array; got {type(value).__name__}"
    )


def _write_csv_without_pandas(argument: str, value: Any, target: Path) -> Path:
    import csv

    rows = value.tolist() if hasattr(value, "tolist") else value
    if not isinstance(rows, (list, tuple)):
        raise InputError(_not_a_table(argument, value))
    rows = [row if isinstance(row, (list, tuple)) else [row] for row in rows]
    width = max((len(row) for row in rows), default=1)
    with open(target, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([str(i) for i in range(width)])
        writer.writerows(rows)
    return target


def _is_table_object(value: Any) -> bool:
    return not isinstance(value, (str, os.PathLike)) and value is not None


def _table(argument: str, value: Any, folder: Path, stem: str, problems: List[str]) -> Optional[Path]:
    """`value` as a table file to upload: an existing .csv/.parquet path, or an object written now."""
    if _is_table_object(value):
        try:
            return _write_table(argument, value, folder, stem)
        except InputError as exc:
            problems.append(str(exc))
            return None
    path = existing_file(argument, value, problems)
    if path is not None and not path.name.lower().endswith(TABLE_SUFFIXES):
        problems.append(f"{argument}: '{path.name}' is not a .csv or .parquet file")
        return None
    return path


# Requirements of a pickle -------------------------------------------------------------------

# First parts of a distribution's file paths that are not importable names.
_NOT_MODULES = (".dist-info", ".egg-info", ".data", "__pycache__", "..")
_STRING_OPS = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
}


def pickled_globals(data: bytes) -> List[Tuple[str, str]]:
    """The ``(module, name)`` of every class and function a pickle refers to (its GLOBAL,
    INST and STACK_GLOBAL opcodes), in order, read without loading the pickle."""
    found: List[Tuple[str, str]] = []
    memo: Dict[int, Any] = {}
    # What the last two opcodes pushed, when text: STACK_GLOBAL's module and name.
    strings: collections.deque = collections.deque([None, None], maxlen=2)
    for opcode, arg, _pos in pickletools.genops(data):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            found.append((module, qualname))
        elif name == "STACK_GLOBAL":
            if isinstance(strings[0], str) and isinstance(strings[1], str):
                found.append((strings[0], strings[1]))
        elif name in _STRING_OPS:
            strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
        elif name == "MEMOIZE":
            memo[len(memo)] = strings[-1]
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = strings[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            strings.append(memo.get(int(arg)))
        elif name not in ("FRAME", "PROTO"):
            strings.append(None)  # something else is on top of the stack now
        if name in ("GLOBAL", "INST", "STACK_GLOBAL"):
            strings.append(None)  # the class now sits on top
    return found


def _stdlib_names() -> frozenset:
    names = getattr(sys, "stdlib_module_names", None)  # Python 3.10+
    if names is not None:
        return frozenset(names) | frozenset(sys.builtin_module_names)
    return frozenset(sys.builtin_module_names)


def _is_stdlib(top: str) -> bool:
    if top in _stdlib_names():
        return True
    if hasattr(sys, "stdlib_module_names"):
        return False
    try:  # Python 3.8/3.9: a module found in the standard library's folder
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None) if spec is not None else None
    if not origin or origin in ("built-in", "frozen"):
        return spec is not None
    if "site-packages" in origin or "dist-packages" in origin:
        return False
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    return os.path.realpath(origin).startswith(stdlib + os.sep)


def _packages_distributions() -> Dict[str, List[str]]:
    """Top-level module → the installed distributions providing it.

    Like ``importlib.metadata.packages_distributions()`` on Python 3.11+, on every Python:
    a distribution's ``top_level.txt``, else the top-level names of its files (wheels built
    with meson-python or scikit-build-core — numpy, scikit-learn, LightGBM — have no
    ``top_level.txt``, and Python 3.10's own function misses them).
    """
    from importlib import metadata

    mapping: Dict[str, List[str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        tops = (dist.read_text("top_level.txt") or "").split()
        if not tops:
            tops = [
                Path(str(file)).parts[0].split(".")[0]
                for file in dist.files or []
                if Path(str(file)).parts and not Path(str(file)).parts[0].endswith(_NOT_MODULES)
            ]
        for top in dict.fromkeys(tops):
            if top and name not in mapping.setdefault(top, []):
                mapping[top].append(name)
    return mapping


def requirements_from_pickle(path: PathLike) -> Tuple[List[str], List[str]]:
    """Pinned requirements (``name==version``) for the installed distributions a pickle's
    modules come from, and the modules no installed distribution provides.

    The pickle is only read (``pickletools``), never loaded.
    """
    data = Path(path).read_bytes()
    # Protocols 0-2 write Python 2's names (copy_reg, __builtin__): read them as Python 3's.
    modules = [_compat_pickle.IMPORT_MAPPING.get(module, module) for module, _ in pickled_globals(data)]
    tops = dict.fromkeys(module.split(".")[0] for module in modules)
    from importlib import metadata

    providers = _packages_distributions()
    pins: Dict[str, str] = {}
    unknown: List[str] = []
    for top in tops:
        if not top or _is_stdlib(top):
            continue
        dists = providers.get(top)
        if not dists:
            # Private top-level modules (_codecs, _pickle…) are the interpreter's own.
            if not top.startswith("_") or top == "__main__":
                unknown.append(top)
            continue
        for dist in dists:
            try:
                pins.setdefault(dist.lower(), f"{dist}=={metadata.version(dist)}")
            except metadata.PackageNotFoundError:  # pragma: no cover - listed but gone
                unknown.append(top)
    return sorted(pins.values(), key=str.lower), unknown


def _generated_requirements(model_file: Path, folder: Path) -> Path:
    pins, unknown = requirements_from_pickle(model_file)
    target = folder / "requirements.txt"
    target.write_text(
        f"# Generated by neomaril_codex from the modules {model_file.name} refers to.\n"
        + "".join(line + "\n" for line in pins),
        encoding="utf-8",
    )
    logger.info(
        "No requirements file given: generated one from the modules %s refers to: %s",
        model_file.name,
        ", ".join(pins) or "(none)",
    )
    if "__main__" in unknown:
        logger.warning(
            "%s refers to classes or functions defined in your script or notebook (__main__), which "
            "the server cannot import: install cloudpickle (it saves them by value) or move them to a "
            "module uploaded as an extra file.",
            model_file.name,
        )
        unknown = [name for name in unknown if name != "__main__"]
    if unknown:
        logger.warning(
            "%s refers to module(s) %s, which no installed distribution provides: upload them as "
            "extra files, or set a requirements file naming where they come from.",
            model_file.name,
            ", ".join(unknown),
        )
    return target


def _training_type(value: Any) -> str:
    """Custom, External or AutoML; anything else is an InputError that says what to do."""
    kind = _choice(value, TRAINING_TYPES)
    if kind is None:
        hint = ""
        if isinstance(value, (str, os.PathLike)) and str(value).lower().endswith(TABLE_SUFFIXES):
            hint = " (the training data goes in train_data=)"
        raise InputError(f"training_type must be 'Custom', 'External' or 'AutoML', got {value!r}{hint}.")
    return kind


class _RunParts(Parts):
    """The upload of a training run: what every upload checks, and the run's own
    arguments (required ones named with the kind of run, tables, JSON)."""

    def required(self, field: str, argument: str, value: Any, kind: str) -> Optional[Path]:
        if value is None:
            self.problems.append(f"{argument}: required for {'a' if kind == 'Custom' else 'an'} {kind} run")
            return None
        return self.file(field, argument, value)

    def table(self, field: str, argument: str, value: Any, folder: Path, *, required: bool) -> None:
        if value is None:
            if required:
                self.problems.append(f"{argument}: required for an External run")
            return
        path = _table(argument, value, folder, field, self.problems)
        if path is not None:
            self.files.append((field, path.name, path))

    def json(self, field: str, argument: str, value: Any) -> None:
        """A dict sent as JSON text in `field`, or a JSON file uploaded in it."""
        if value is None:
            return
        if isinstance(value, dict):
            self.fields.append((field, dumps(value)))
        elif isinstance(value, (str, os.PathLike)):
            self.file(field, argument, value)
        else:
            self.problems.append(
                f"{argument}: expected a dict or the path of a JSON file, got {type(value).__name__}"
            )


# Runs --------------------------------------------------------------------------------------


class NeomarilTrainingExecution:
    """One run of a training experiment: its status, log, artifacts, and promotion.

    You get one from :meth:`NeomarilTrainingExperiment.run_training`,
    :meth:`~NeomarilTrainingExperiment.get_training_execution` or ``log_train``.
    Every call uses your login (a member of the experiment's group).

    Attributes:
        exec_id: the run's number in its experiment (1, 2, 3 …).
        training_id: the experiment's id (``T`` + 32 hex digits).
        group: the group that owns the experiment.
        run_name: the run's name.
        training_type: ``Custom``, ``External`` or ``AutoML``.
        status: the last status seen: Requested, Running, Succeeded or Failed.
    """

    def __init__(self, connection: Connection, info: Dict[str, Any]) -> None:
        self._conn = connection
        self._info: Dict[str, Any] = dict(info)
        self.exec_id = int(info["number"])
        self.training_id: str = info["experiment"]
        self.group: str = info.get("group", "")
        self.run_name: str = info.get("run_name", "")
        self.training_type: str = info.get("training_type", "")
        self.status: str = info.get("status", "Requested")

    def __repr__(self) -> str:
        return (
            f"<NeomarilTrainingExecution {self.exec_id} {self.run_name!r} of {self.training_id} "
            f"{self.training_type} {self.status}>"
        )

    @property
    def url(self) -> str:
        """The run's API URL."""
        return self._conn.absolute(f"{_experiment_path(self.training_id)}/runs/{self.exec_id}")

    def execution_info(self) -> Dict[str, Any]:
        """Everything the server says about the run, fetched now: status, ``error_message``,
        times, files, ``metrics``, ``params``, ``artifacts``, ``promoted_models``, URLs."""
        self._info = self._conn.get_json(self.url, ("status",))
        self.status = self._info["status"]
        self.group = self._info.get("group", self.group)
        return dict(self._info)

    @property
    def execution_data(self) -> Dict[str, Any]:
        """The run's details, fetched now (the same as :meth:`execution_info`)."""
        return self.execution_info()

    def get_status(self) -> Dict[str, Any]:
        """The run's status, as the original product gave it:
        ``{'trainingExecutionId': 3, 'Status': 'Running', 'Message': None}``
        (``Message`` is the error of a Failed run)."""
        answer = self._conn.get_json(self.url + "/status", ("Status",))
        self.status = answer["Status"]
        return answer

    def get_logs(self) -> str:
        """The run's log: the environment build, and the training code's output, timestamped."""
        return self._conn.get_json(self.url + "/logs", ("log",))["log"]

    def wait_ready(self, timeout: float = 3600.0) -> NeomarilTrainingExecution:
        """Wait until the run has finished, polling its status with a growing interval.

        Args:
            timeout: seconds to wait at most (a first run builds its environment).

        Returns:
            The run itself, Succeeded.

        Raises:
            TrainingRunError: the run Failed (an ExecutionError and a TrainingError); the
                message has its error and the end of its log.
            WaitTimeout: still not finished after `timeout` seconds.
        """
        what = f"Training run {self.exec_id} of {self.training_id}"
        wait_finished(self.get_status, "Status", what, self._failure, timeout, logger)
        return self

    def _failure(self, answer: Dict[str, Any]) -> ExecutionError:
        what = f"Training run {self.exec_id} '{self.run_name}' of experiment {self.training_id}"
        return failure_with_log(what, answer.get("Message"), self.get_logs, answer, TrainingRunError)

    def download_result(self, path: str = "./", filename: Optional[str] = None) -> str:
        """Download everything the finished run kept — model, tables, metrics, params,
        extra files, its log — as one zip, streamed to disk.

        Args:
            path: the folder to save it in (created if missing); the current one by default.
            filename: the name to save it under; by default the server's
                (``training-<experiment>-<run>.zip``).

        Returns:
            The path of the saved zip.

        Raises:
            StateError: the run has not finished yet.
            InputError: `path` is a file, not a folder.
            NetworkError: the connection was dropped during the download; nothing is kept.
        """
        target = self._conn.download(
            self.url + "/artifacts", path, filename=filename, default=f"training_{self.exec_id}.zip"
        )
        logger.info("Output saved in %s", target)
        return str(target)

    def promote_model(
        self,
        model_name: Optional[str],
        model_reference: Optional[str] = None,
        source_file: Optional[PathLike] = None,
        schema: Union[PathLike, Dict[str, Any], None] = None,
        extra_files: Optional[Sequence[PathLike]] = None,
        requirements_file: Optional[PathLike] = None,
        env: Optional[PathLike] = None,
        operation: Optional[str] = None,
        input_type: Optional[str] = None,
        wait_for_ready: bool = True,
        *,
        version_of: Union[str, NeomarilModel, None] = None,
    ) -> Union[NeomarilModel, NeomarilModelVersion]:
        """Deploy this Succeeded run as a model, or as the next version of one (`version_of`).

        The model file, the Python version, the group and the environment come from the
        run (the model reuses the run's environment: no new build of it); you give the
        scoring code. A run of AutoML needs only `model_name` and `operation`: the
        platform brings its scoring code and schema.

        Args:
            model_name: a name for people (up to 64 characters); not used with
                `version_of` (a version has its model's name): pass None.
            model_reference: the entrypoint function in `source_file`, e.g. ``'score'``.
            source_file: the scoring script (``.py``).
            schema: one example input, as a JSON file path or a dict. Required for Sync models.
            extra_files: more files, put beside the source.
            requirements_file: packages the scoring code needs beyond the run's environment.
            env: a ``.env`` file of secrets (stored encrypted).
            operation: ``'Sync'`` (the default for a new model) or ``'Async'``; a version
                has its model's operation.
            input_type: ``json`` for Sync; ``csv`` (default), ``parquet`` or ``json`` for Async.
            wait_for_ready: wait until the model (or the version) is Deployed.
            version_of: a model of the run's group (its hash or its
                :class:`~neomaril_codex.model.NeomarilModel`): the run becomes that model's
                next version, which goes live once Deployed.

        Returns:
            The new :class:`~neomaril_codex.model.NeomarilModel` (Deployed when
            `wait_for_ready`); with `version_of`, the new
            :class:`~neomaril_codex.model.NeomarilModelVersion`.

        Raises:
            StateError: the run has not Succeeded (the server's message says its state).
            InputError: a file is missing, or the server refused the upload (e.g. a
                `version_of` of another group: ``error.errors["version_of"]``).
            BuildError: with `wait_for_ready`, the build failed.
        """
        model_hash = version_of.model_hash if isinstance(version_of, NeomarilModel) else version_of
        if model_hash:  # a version has its model's name, and its operation unless one is asked
            fields = [("version_of", model_hash)]
        elif model_name:
            fields = [("name", model_name)]
        else:
            raise InputError(
                "model_name: required, unless version_of= names the model this run becomes a version of."
            )
        if operation is not None or not model_hash:
            op = _choice("Sync" if operation is None else operation, OPERATIONS)
            if op is None:
                raise InputError(f"operation must be 'Sync' or 'Async', got {operation!r}.")
            fields.append(("operation", op))
        if model_reference is not None:
            fields.append(("model_reference", model_reference))
        if input_type:
            fields.append(("input_type", input_type))
        parts = _model_parts(
            fields,
            source_file=source_file,
            requirements_file=requirements_file,
            schema=schema,
            env=env,
            extra_files=extra_files,
        )
        response = self._conn.upload(
            self.url + "/promote",
            fields=parts.fields,
            files=parts.files,
            label=f"Promoting run {self.exec_id}",
        )
        if model_hash:
            return self._promoted_version(json_of(response, ("model", "version")), version_of, wait_for_ready)
        model = NeomarilModel(self._conn, json_of(response, ("hash",)))
        logger.info(
            "Training run %s of %s promoted to model '%s' (%s); it is being built.",
            self.exec_id,
            self.training_id,
            model.name,
            model.model_hash,
        )
        if wait_for_ready:
            model.wait_ready()
        return model

    def _promoted_version(
        self, info: Dict[str, Any], version_of: Union[str, NeomarilModel], wait_for_ready: bool
    ) -> NeomarilModelVersion:
        model = version_of
        if not isinstance(model, NeomarilModel):
            model = NeomarilModel(self._conn, self._conn.get_json(f"/models/{info['model']}", ("hash",)))
        version = NeomarilModelVersion(model, info)
        logger.info(
            "Training run %s of %s promoted to version %s of model '%s' (%s); it is being built "
            "and goes live once Deployed.",
            self.exec_id,
            self.training_id,
            version.version,
            model.name,
            model.model_hash,
        )
        if wait_for_ready:
            version.wait_ready()
        return version


# log_train ---------------------------------------------------------------------------------


class NeomarilTrainingLogger:
    """What a ``log_train`` block records; uploaded as an External run when the block ends.

    Get one from :meth:`NeomarilTrainingExperiment.log_train`. After a clean exit,
    :attr:`execution` is the new run.
    """

    def __init__(
        self,
        name: str,
        X_train: Any,
        y_train: Any = None,
        description: Optional[str] = None,
    ) -> None:
        self.name = name
        self.X_train = X_train
        self.y_train = y_train
        self.description = description
        self.folder = Path(tempfile.mkdtemp(prefix="neomaril-train-"))
        self.model_file: Optional[Path] = None
        self.model_output: Any = None
        self.metrics: Dict[str, Any] = {}
        self.params: Dict[str, Any] = {}
        self.extra_files: List[PathLike] = []
        self.python_version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        self.requirements_file: Optional[PathLike] = None
        self.env: Optional[PathLike] = None
        self.execution: Optional[NeomarilTrainingExecution] = None

    def __repr__(self) -> str:
        return f"<NeomarilTrainingLogger {self.name!r} model={'saved' if self.model_file else 'not saved'}>"

    def save_model(self, model: Any) -> Path:
        """Pickle the fitted model as ``model.pkl`` (with cloudpickle when installed, which
        also keeps functions and classes defined in a notebook)."""
        target = self.folder / "model.pkl"
        try:
            import cloudpickle as pickler  # optional: only to save the user's model
        except ImportError:
            pickler = pickle  # type: ignore[assignment]
        with open(target, "wb") as out:
            pickler.dump(model, out)
        self.model_file = target
        return target

    def save_metric(self, name: str, value: Any) -> None:
        """Record a metric (a number): ``save_metric('auc', 0.97)``."""
        self.metrics[name] = value

    def save_model_output(self, output: Any) -> None:
        """Record the model's outputs on X_train (a DataFrame, Series or array):
        monitoring compares production outputs with them."""
        self.model_output = output

    def add_extra(self, extra: PathLike) -> None:
        """Keep a file with the run (a plot, a report, a validation set)."""
        self.extra_files.append(extra)

    def save_and_add_plot(self, figure: Any, filename: str) -> Path:
        """Save a matplotlib figure as PNG (``filename``, ``.png`` added when it has no
        extension) and keep it with the run."""
        name = Path(filename).name
        if not Path(name).suffix:
            name += ".png"
        target = self.folder / name
        figure.savefig(target, format="png")
        self.extra_files.append(target)
        return target

    def set_python_version(self, version: str) -> None:
        """The Python the run's environment uses (default: the one running this code)."""
        self.python_version = str(version)

    def set_requirements(self, requirements: PathLike) -> None:
        """A requirements.txt for the run's environment, instead of the generated one."""
        self.requirements_file = requirements

    def set_env(self, env: PathLike) -> None:
        """A ``.env`` file of secrets for the run (stored encrypted)."""
        self.env = env

    def save_params(self, params: Dict[str, Any]) -> None:
        """Record parameters (a dict, kept as the run's logged params)."""
        self.params.update(params)

    def add_params(self, params: Optional[Dict[str, Any]] = None, **more: Any) -> None:
        """Record parameters: ``add_params({'lr': 0.1})`` or ``add_params(lr=0.1)``."""
        self.params.update(params or {}, **more)

    def _missing(self) -> List[str]:
        missing = []
        if self.model_file is None:
            missing.append("logger.save_model(model)")
        if self.model_output is None:
            missing.append("logger.save_model_output(output)")
        return missing


# Experiments -------------------------------------------------------------------------------


class NeomarilTrainingExperiment:
    """A training experiment: its runs, and new ones.

    Get one from :meth:`NeomarilTrainingClient.create_training_experiment` or
    :meth:`NeomarilTrainingClient.get_training`.

    Attributes:
        training_id: the experiment's id (``T`` + 32 hex digits).
        experiment_name: its name.
        model_type: Classification, Regression or Unsupervised.
        group: the group that owns it.
    """

    def __init__(self, connection: Connection, info: Dict[str, Any]) -> None:
        self._conn = connection
        self._info: Dict[str, Any] = dict(info)
        self.training_id: str = info["hash"]
        self.experiment_name: str = info.get("name", "")
        self.model_type: str = info.get("model_type", "")
        self.group: str = info.get("group", "")

    def __repr__(self) -> str:
        return (
            f"<NeomarilTrainingExperiment {self.experiment_name!r} {self.training_id} "
            f"{self.model_type} group={self.group!r}>"
        )

    def experiment_info(self) -> Dict[str, Any]:
        """Everything the server says about the experiment, fetched now, with its ``runs``."""
        self._info = self._conn.get_json(_experiment_path(self.training_id), ())
        return dict(self._info)

    @property
    def training_data(self) -> Dict[str, Any]:
        """The experiment's details and runs, fetched now (see :meth:`experiment_info`)."""
        return self.experiment_info()

    @property
    def executions(self) -> List[int]:
        """The numbers of the experiment's runs, oldest first."""
        return sorted(int(run["number"]) for run in self.experiment_info().get("runs", []))

    def _execution(self, info: Dict[str, Any]) -> NeomarilTrainingExecution:
        info = {"group": self.group, "experiment": self.training_id, **info}
        return NeomarilTrainingExecution(self._conn, info)

    def run_training(
        self,
        run_name: str,
        training_type: str = "Custom",
        description: Optional[str] = None,
        train_data: Optional[PathLike] = None,
        training_reference: Optional[str] = None,
        python_version: str = "3.10",
        conf_dict: Union[PathLike, Dict[str, Any], None] = None,
        source_file: Optional[PathLike] = None,
        requirements_file: Optional[PathLike] = None,
        extra_files: Optional[Sequence[PathLike]] = None,
        env: Optional[PathLike] = None,
        X_train: Any = None,
        y_train: Any = None,
        model_outputs: Any = None,
        model_file: Optional[PathLike] = None,
        model_metrics: Union[PathLike, Dict[str, Any], None] = None,
        model_params: Union[PathLike, Dict[str, Any], None] = None,
        wait_complete: bool = False,
    ) -> NeomarilTrainingExecution:
        """Start a run of this experiment.

        **Custom** runs upload `train_data` (.csv or .parquet), `source_file` (defining
        `training_reference`, default ``train_model``, called as ``train_model(df,
        base_path)`` or ``train_model(base_path)``) and `requirements_file`; the server
        builds the environment and trains. **External** runs register a model trained
        elsewhere: `X_train`, `y_train` (not for Unsupervised), `model_outputs` — file
        paths (.csv/.parquet) or DataFrames/Series/arrays — `model_file` (the pickle),
        and optionally `model_metrics`/`model_params` (dicts or JSON files). Without a
        `requirements_file`, an External run gets one generated from the modules the
        pickle refers to, pinned at their installed versions. **AutoML** runs upload
        `train_data` and `conf_dict` (the original ``conf.json``); the platform brings the
        training code, its environment and its Python.

        Args:
            run_name: the run's name.
            training_type: ``'Custom'``, ``'External'`` or ``'AutoML'``.
            description: a note kept with the run.
            train_data: Custom and AutoML: the training data file.
            training_reference: Custom: the training function's name.
            python_version: the Python of the run's environment, e.g. ``'3.9'`` (not AutoML).
            conf_dict: AutoML: the configuration, a JSON file path or a dict.
            source_file: Custom: the training script.
            requirements_file: the environment's ``requirements.txt``.
            extra_files: more files: beside the script (Custom) or kept with the run (External).
            env: a ``.env`` file of secrets for the training code (stored encrypted).
            X_train, y_train, model_outputs: External: the features, target and outputs.
            model_file: External: the fitted model's pickle.
            model_metrics, model_params: External: metrics (name → number) and parameters.
            wait_complete: wait until the run has finished (see
                :meth:`NeomarilTrainingExecution.wait_ready`).

        Returns:
            The new :class:`NeomarilTrainingExecution`.

        Raises:
            InputError: a file is missing or of the wrong kind (all are reported at once,
                before anything is sent), or the server refused the run.
            TrainingRunError: with `wait_complete`, the run Failed (an ExecutionError).
        """
        kind = _training_type(training_type)
        optional = {
            "train_data": train_data,
            "source_file": source_file,
            "training_reference": training_reference,
            "conf_dict": conf_dict,
            "requirements_file": requirements_file,
            "extra_files": extra_files,
            "env": env,
            "X_train": X_train,
            "y_train": y_train,
            "model_outputs": model_outputs,
            "model_file": model_file,
            "model_metrics": model_metrics,
            "model_params": model_params,
        }
        parts = _RunParts([("run_name", run_name), ("training_type", kind)])
        if kind != "AutoML":  # AutoML runs on the platform's own Python
            parts.fields.append(("python_version", str(python_version)))
        if description:
            parts.fields.append(("description", description))
        for argument, value in optional.items():
            if value is not None and argument not in USED_BY[kind]:
                kinds = " and ".join(k for k, used in USED_BY.items() if argument in used)
                parts.problems.append(f"{argument} is only used by {kinds} runs (this one is {kind})")

        with tempfile.TemporaryDirectory(prefix="neomaril-run-") as scratch:
            model_path = None
            if kind == "AutoML":
                parts.required("train_data", "train_data", train_data, kind)
                if conf_dict is None:
                    parts.problems.append("conf_dict: required for an AutoML run (conf.json, or a dict)")
                parts.json("conf_dict", "conf_dict", conf_dict)
            elif kind == "Custom":
                if training_reference:
                    parts.fields.append(("training_reference", training_reference))
                parts.required("train_data", "train_data", train_data, kind)
                parts.required("source", "source_file", source_file, kind)
                parts.required("requirements", "requirements_file", requirements_file, kind)
            else:
                parts.table("X_train", "X_train", X_train, Path(scratch), required=True)
                parts.table(
                    "y_train", "y_train", y_train, Path(scratch), required=self.model_type != "Unsupervised"
                )
                parts.table("model_output", "model_outputs", model_outputs, Path(scratch), required=True)
                model_path = parts.required("model", "model_file", model_file, kind)
                parts.json("metrics", "model_metrics", model_metrics)
                parts.json("params", "model_params", model_params)
                parts.optional("requirements", "requirements_file", requirements_file)
            parts.optional("env", "env", env)
            parts.extras(extra_files)
            parts.check()
            if model_path is not None and requirements_file is None:
                generated = _generated_requirements(model_path, Path(scratch))
                parts.files.append(("requirements", generated.name, generated))
            response = self._conn.upload(
                _experiment_path(self.training_id) + "/runs",
                fields=parts.fields,
                files=parts.files,
                label=f"Uploading training run '{run_name}'",
            )
        run = self._execution(json_of(response, ("number",)))
        logger.info(
            "Training run %s '%s' (%s) of experiment '%s' requested.",
            run.exec_id,
            run.run_name,
            kind,
            self.experiment_name,
        )
        if wait_complete:
            run.wait_ready()
        return run

    @contextlib.contextmanager
    def log_train(
        self,
        name: str,
        X_train: Any,
        y_train: Any = None,
        description: Optional[str] = None,
        wait_complete: bool = False,
    ) -> Iterator[NeomarilTrainingLogger]:
        """Record a model trained here, in this Python, and upload it as an External run
        when the block ends.

        .. code:: python

            with training.log_train('Teste 1', X, y) as logger:
                pipe.fit(X, y)
                logger.save_model(pipe)
                logger.save_model_output(pipe.predict_proba(X)[:, 1])
                logger.save_metric('auc', auc)
            run = logger.execution

        An exception inside the block uploads nothing (and propagates). Without
        ``logger.set_requirements(path)``, the requirements are generated from the
        modules the pickled model refers to, pinned at their installed versions.

        Args:
            name: the run's name.
            X_train: the features (a DataFrame, array, or a .csv/.parquet path).
            y_train: the target (not for Unsupervised experiments).
            description: a note kept with the run.
            wait_complete: wait until the server has checked and stored the run.

        Yields:
            A :class:`NeomarilTrainingLogger`; its ``execution`` is the run once uploaded.
        """
        recorder = NeomarilTrainingLogger(name, X_train, y_train, description)
        try:
            yield recorder
            missing = recorder._missing()
            if missing:
                raise InputError(
                    f"log_train '{name}': nothing was uploaded; call {' and '.join(missing)} inside the block."
                )
            recorder.execution = self.run_training(
                name,
                "External",
                description,
                python_version=recorder.python_version,
                requirements_file=recorder.requirements_file,
                extra_files=recorder.extra_files,
                env=recorder.env,
                X_train=X_train,
                y_train=y_train,
                model_outputs=recorder.model_output,
                model_file=recorder.model_file,
                model_metrics=recorder.metrics,
                model_params=recorder.params or None,
                wait_complete=wait_complete,
            )
        finally:
            shutil.rmtree(recorder.folder, ignore_errors=True)

    def get_training_execution(self, exec_id: Optional[int] = None) -> NeomarilTrainingExecution:
        """A run of this experiment by its number; the latest run when `exec_id` is None."""
        if exec_id is None:
            numbers = self.executions
            if not numbers:
                raise NotFoundError(
                    f"Experiment '{self.experiment_name}' ({self.training_id}) has no runs yet.",
                    status_code=404,
                )
            exec_id = numbers[-1]
            logger.info("No run number given: using the latest, %s", exec_id)
        number = whole_number("exec_id", exec_id)
        info = self._conn.get_json(f"{_experiment_path(self.training_id)}/runs/{number}", ("number",))
        return self._execution(info)

    def get_all_training_executions(self) -> List[NeomarilTrainingExecution]:
        """Every run of this experiment, oldest first."""
        runs = self.experiment_info().get("runs", [])
        return [self._execution(run) for run in sorted(runs, key=lambda run: int(run["number"]))]

    def compare(self, metric: Optional[str] = None, order: str = "desc") -> List[Dict[str, Any]]:
        """The runs side by side, one dict per run (``number``, ``run_name``, ``status``,
        ``metrics``…), sorted by `metric` (runs without it last) or by number.
        ``pd.DataFrame(training.compare('auc'))`` tabulates them.

        Args:
            metric: a metric's name, or ``number``, ``status``, ``run_name``,
                ``requested_at``, ``duration_seconds``.
            order: ``'desc'`` (best first for scores) or ``'asc'``.
        """
        if order not in ("asc", "desc"):
            raise InputError(f"order must be 'asc' or 'desc', got {order!r}.")
        params = {"order": order}
        if metric:
            params["sort"] = metric
        return self._conn.get_json(f"{_experiment_path(self.training_id)}/runs", ("runs",), params=params)[
            "runs"
        ]


# Client ------------------------------------------------------------------------------------


class NeomarilTrainingClient(BaseNeomarilClient):
    """Create and find training experiments (and groups: see
    :class:`~neomaril_codex.base.BaseNeomarilClient`).

    Args are those of :class:`~neomaril_codex.base.BaseNeomarilClient`: with no
    arguments the connection comes from ``NEOMARIL_URL`` and ``NEOMARIL_USER`` +
    ``NEOMARIL_PASSWORD`` (or ``NEOMARIL_TOKEN``), from the environment or a ``.env``.
    """

    def create_training_experiment(
        self,
        experiment_name: str,
        model_type: str,
        group: Optional[str] = None,
        force: bool = False,
    ) -> NeomarilTrainingExperiment:
        """The group's experiment with this name and model type — created when there is
        none (or always, with `force`).

        The mid-2023 original's positional form, ``create_training_experiment('Training
        example', 'Classification', 'Custom', 'ex_group')`` (name, model type, training
        type, group), works too: a training type (Custom, AutoML, External) in third place
        followed by a string is read as that form. Experiments here have no training
        type (each run has its own): it is logged and the fourth argument is the group.

        Args:
            experiment_name: the experiment's name (up to 64 characters).
            model_type: ``Classification``, ``Regression`` or ``Unsupervised``.
            group: the group that owns it (default: ``NEOMARIL_GROUP``).
            force: create a new experiment even when one with this name and type exists.

        Returns:
            The :class:`NeomarilTrainingExperiment`.

        Raises:
            InputError: a wrong `model_type`, no group, or a `force` that is not True or False.
        """
        kind = _choice(model_type, MODEL_TYPES)
        if kind is None:
            raise InputError(
                f"model_type must be Classification, Regression or Unsupervised, got {model_type!r}."
            )
        training_type = _choice(group, TRAINING_TYPES) if isinstance(force, str) else None
        if training_type is not None:
            # The mid-2023 original's (experiment_name, model_type, training_type, group).
            logger.info(
                "create_training_experiment(..., '%s', '%s'): read as the original's training_type "
                "and group. The training type is chosen per run here (run_training(..., "
                "training_type='%s')); the experiment goes to group '%s'.",
                group,
                force,
                training_type,
                force,
            )
            group, force = force, False
        if not isinstance(force, bool):
            raise InputError(
                f"force must be True or False, got {force!r}. The original's "
                "create_training_experiment(name, model_type, training_type, group) takes a "
                "training type (Custom, AutoML, External) third; otherwise pass group= and force=."
            )
        group = group or _env("NEOMARIL_GROUP")
        if not group:
            raise InputError(
                "No group: pass group='…' (create one with client.create_group) or set NEOMARIL_GROUP."
            )
        response = self._conn.request(
            "POST",
            "/training/experiments",
            json={
                "experiment_name": experiment_name,
                "model_type": kind,
                "group": group,
                "force": force,
            },
        )
        experiment = NeomarilTrainingExperiment(self._conn, json_of(response, ("hash",)))
        if response.status_code == 201:
            logger.info(
                "Training experiment '%s' created in group '%s' with id %s",
                experiment.experiment_name,
                experiment.group,
                experiment.training_id,
            )
        else:
            logger.info(
                "Using the existing training experiment '%s' (%s) of group '%s'; force=True creates a new one.",
                experiment.experiment_name,
                experiment.training_id,
                experiment.group,
            )
        return experiment

    def get_training(self, training_id: str, group: Optional[str] = None) -> NeomarilTrainingExperiment:
        """The experiment with this id (checked to belong to `group` when given)."""
        info = self._conn.get_json(_experiment_path(training_id), ("hash",))
        if group is not None and info.get("group") != group:
            raise NotFoundError(
                f"Training experiment {training_id} is not in group '{group}'.", status_code=404
            )
        return NeomarilTrainingExperiment(self._conn, info)

    def search_experiments(
        self,
        name: Optional[str] = None,
        model_type: Optional[str] = None,
        group: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """Experiments you can see, newest first, as dicts (``hash``, ``name``, ``group``,
        ``model_type``, ``runs_count``…): ``pd.DataFrame(client.search_experiments())``
        tabulates them.

        Args:
            name: part of the name (case-insensitive).
            model_type: only this type (Classification, Regression, Unsupervised).
            group: only this group's experiments.
        """
        if model_type is not None:
            kind = _choice(model_type, MODEL_TYPES)
            if kind is None:
                raise InputError(
                    f"model_type must be Classification, Regression or Unsupervised, got {model_type!r}."
                )
            model_type = kind
        params = {
            key: value
            for key, value in (("name", name), ("model_type", model_type), ("group", group))
            if value
        }
        return list(self._conn.paginate("/training/experiments", params))
