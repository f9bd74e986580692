"""neomaril_codex.training against the fake transport: argument order, the requests sent,
the missing-files report, the requirements generated from a pickle, log_train, polling,
downloads and promotion.

No Django and no server, like test_unit.py: stdlib, requests and pytest only (pandas
where a test says so), so these run on Python 3.8 as well.
"""

from __future__ import annotations

import collections
import importlib.metadata
import inspect
import json
import logging
import pickle
import pickletools
import sys
from pathlib import Path

import pytest
import requests
from neomaril_codex import base, training
from neomaril_codex.exceptions import (
    ExecutionError,
    InputError,
    NetworkError,
    NotFoundError,
    StateError,
    TrainingError,
    TrainingRunError,
    WaitTimeout,
)
from neomaril_codex.model import NeomarilModel, NeomarilModelVersion
from neomaril_codex.training import (
    NeomarilTrainingClient,
    NeomarilTrainingExecution,
    NeomarilTrainingExperiment,
    requirements_from_pickle,
)

from tests.helpers.sdk import sdk_env
from tests.sdk.fake import URL, FakeServer, logged_in_server, model_info, session_with

T_HASH = "T" + "b" * 32
M_HASH = "M" + "a" * 32
EXPERIMENTS = "/api/v1/training/experiments"
EXPERIMENT = f"{EXPERIMENTS}/{T_HASH}"
RUNS = f"{EXPERIMENT}/runs"
REQUESTS_PIN = f"requests=={importlib.metadata.version('requests')}"


def experiment_info(**overrides):
    info = {
        "hash": T_HASH,
        "name": "Teste notebook",
        "group": "datarisk",
        "model_type": "Classification",
        "created_by": "ana",
        "runs_count": 0,
        "url": f"{URL}{EXPERIMENT}",
        "runs": [],
    }
    info.update(overrides)
    return info


def run_info(number=1, **overrides):
    info = {
        "experiment": T_HASH,
        "number": number,
        "run_name": "First test",
        "training_type": "Custom",
        "status": "Requested",
        "error_message": "",
        "metrics": None,
        "url": f"{URL}{RUNS}/{number}",
        "experiment_name": "Teste notebook",
        "group": "datarisk",
        "model_type": "Classification",
    }
    info.update(overrides)
    return info


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    sdk_env(monkeypatch, tmp_path)


@pytest.fixture
def sleeps(monkeypatch):
    """The waits the SDK asked for (time.sleep is the same module object everywhere)."""
    asked = []
    monkeypatch.setattr(base.time, "sleep", asked.append)
    return asked


@pytest.fixture
def server() -> FakeServer:
    return logged_in_server()


@pytest.fixture
def client(server) -> NeomarilTrainingClient:
    return NeomarilTrainingClient("ana", "pw", URL, session=session_with(server))


@pytest.fixture
def experiment(client, server) -> NeomarilTrainingExperiment:
    server.on("GET", EXPERIMENT, 200, experiment_info())
    return client.get_training(T_HASH)


@pytest.fixture
def PATH(tmp_path) -> str:
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "dados.csv").write_text("a,b,target\n1,2,0\n3,4,1\n")
    (folder / "train.py").write_text("def train_model(df, base_path):\n    return {}\n")
    (folder / "app.py").write_text("def score(data, base_path):\n    return {}\n")
    (folder / "requirements.txt").write_text("scikit-learn==1.6.1\n")
    (folder / "utils.py").write_text("X = 1\n")
    (folder / ".env").write_text("API_KEY=secret\n")
    (folder / "schema.json").write_text('{"radius": 14.1}')
    (folder / "X_train.csv").write_text("a,b\n1,2\n3,4\n")
    (folder / "y_train.parquet").write_bytes(b"PAR1 not really")
    (folder / "output.csv").write_text("pred\n0\n1\n")
    (folder / "model.pkl").write_bytes(pickle.dumps(requests.structures.CaseInsensitiveDict(a=1)))
    (folder / "metrics.json").write_text('{"auc": 0.9}')
    return str(folder) + "/"


def answers(*values):
    """A handler's successive bodies; the last one repeats."""
    remaining = list(values)

    def next_value():
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return next_value


def parameters(function) -> list:
    return [name for name in inspect.signature(function).parameters if name != "self"]


# The original product's names and argument order ------------------------------------------


def test_names_and_argument_order_are_the_original_products():
    assert parameters(NeomarilTrainingClient.create_training_experiment) == [
        "experiment_name",
        "model_type",
        "group",
        "force",
    ]
    assert parameters(NeomarilTrainingClient.get_training) == ["training_id", "group"]
    assert parameters(NeomarilTrainingExperiment.run_training) == [
        "run_name",
        "training_type",
        "description",
        "train_data",
        "training_reference",
        "python_version",
        "conf_dict",
        "source_file",
        "requirements_file",
        "extra_files",
        "env",
        "X_train",
        "y_train",
        "model_outputs",
        "model_file",
        "model_metrics",
        "model_params",
        "wait_complete",
    ]
    defaults = inspect.signature(NeomarilTrainingExperiment.run_training).parameters
    assert defaults["training_type"].default == "Custom" and defaults["python_version"].default == "3.10"
    assert parameters(NeomarilTrainingExperiment.get_training_execution) == ["exec_id"]
    assert parameters(NeomarilTrainingExperiment.log_train)[:4] == [
        "name",
        "X_train",
        "y_train",
        "description",
    ]
    assert parameters(NeomarilTrainingExecution.promote_model) == [
        "model_name",
        "model_reference",
        "source_file",
        "schema",
        "extra_files",
        "requirements_file",
        "env",
        "operation",
        "input_type",
        "wait_for_ready",
        "version_of",  # ours, keyword-only, last
    ]
    assert parameters(NeomarilTrainingExecution.download_result) == ["path", "filename"]
    assert set(training.__all__) >= {
        "NeomarilTrainingClient",
        "NeomarilTrainingExperiment",
        "NeomarilTrainingExecution",
    }


# Experiments -------------------------------------------------------------------------------


def test_create_training_experiment_as_the_guide_calls_it(client, server, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    server.on("POST", EXPERIMENTS, 201, experiment_info())
    training_ = client.create_training_experiment("Teste notebook", "classification", group="datarisk")
    assert server.last("POST", EXPERIMENTS).json() == {
        "experiment_name": "Teste notebook",
        "model_type": "Classification",
        "group": "datarisk",
        "force": False,
    }
    assert server.last("POST", EXPERIMENTS).headers["Authorization"] == "Token nmu_user"
    assert (training_.training_id, training_.experiment_name, training_.model_type, training_.group) == (
        T_HASH,
        "Teste notebook",
        "Classification",
        "datarisk",
    )
    assert f"Training experiment 'Teste notebook' created in group 'datarisk' with id {T_HASH}" in caplog.text

    server.on("POST", EXPERIMENTS, 200, experiment_info())  # the group already has it
    client.create_training_experiment("Teste notebook", "Classification", "datarisk", True)
    assert server.last("POST", EXPERIMENTS).json()["force"] is True
    assert "Using the existing training experiment 'Teste notebook'" in caplog.text


def test_create_training_experiment_refuses_before_sending(client, server, monkeypatch):
    before = len(server.sent)
    with pytest.raises(InputError, match="model_type must be Classification, Regression or Unsupervised"):
        client.create_training_experiment("x", "Clustering", group="datarisk")
    with pytest.raises(InputError, match="No group: pass group="):
        client.create_training_experiment("x", "Regression")
    assert len(server.sent) == before
    monkeypatch.setenv("NEOMARIL_GROUP", "from-env")
    server.on("POST", EXPERIMENTS, 201, experiment_info(group="from-env"))
    client.create_training_experiment("x", "Regression")
    assert server.last("POST").json()["group"] == "from-env"


def test_create_training_experiment_in_the_mid_2023_originals_positional_form(client, server, caplog):
    """Its docstring: create_training_experiment('Training example', 'Classification', 'Custom', 'ex_group')."""
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    server.on("POST", EXPERIMENTS, 201, experiment_info(name="Training example", group="ex_group"))
    experiment = client.create_training_experiment("Training example", "Classification", "Custom", "ex_group")
    assert server.last("POST", EXPERIMENTS).json() == {
        "experiment_name": "Training example",
        "model_type": "Classification",
        "group": "ex_group",
        "force": False,
    }
    assert experiment.group == "ex_group"
    assert "read as the original's training_type and group" in caplog.text
    for kind in ("AutoML", "external"):
        client.create_training_experiment("Training example", "Classification", kind, "ex_group")
        assert server.last("POST", EXPERIMENTS).json()["group"] == "ex_group"


def test_create_training_experiment_refuses_a_force_that_is_not_a_bool(client, server):
    before = len(server.sent)
    with pytest.raises(InputError, match="force must be True or False, got 'ex_group'"):
        client.create_training_experiment("x", "Classification", "datarisk", "ex_group")
    for force in ("yes", 1, None):
        with pytest.raises(InputError, match="force must be True or False"):
            client.create_training_experiment("x", "Classification", group="datarisk", force=force)
    assert len(server.sent) == before


def test_get_training_and_search(client, server):
    server.on("GET", EXPERIMENT, 200, experiment_info())
    assert client.get_training(T_HASH, "datarisk").training_id == T_HASH
    with pytest.raises(NotFoundError, match="is not in group 'others'"):
        client.get_training(T_HASH, group="others")
    page2 = f"{URL}{EXPERIMENTS}?page=2"
    server.handle(
        "GET",
        EXPERIMENTS,
        lambda sent: (
            200,
            {"results": [{"hash": "T2"}], "next": None}
            if "page=2" in sent.path
            else {"results": [{"hash": "T1"}], "next": page2},
            {},
        ),
    )
    found = client.search_experiments(name="teste", model_type="regression", group="datarisk")
    assert [e["hash"] for e in found] == ["T1", "T2"]
    first = [s for s in server.sent if s.path.startswith(EXPERIMENTS + "?")][0]
    assert first.path == f"{EXPERIMENTS}?name=teste&model_type=Regression&group=datarisk&page_size=500"


# run_training ------------------------------------------------------------------------------


def test_custom_run_positional_in_the_original_order(experiment, server, PATH, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    server.on("POST", RUNS, 201, run_info(3))
    run = experiment.run_training(
        "First test",
        "Custom",
        "LightGBM on the breast-cancer data",
        PATH + "dados.csv",
        "train_model",
        "3.9",
        None,
        PATH + "train.py",
        PATH + "requirements.txt",
        [PATH + "utils.py"],
        PATH + ".env",
    )
    assert isinstance(run, NeomarilTrainingExecution)
    assert (run.exec_id, run.training_id, run.group, run.run_name, run.status) == (
        3,
        T_HASH,
        "datarisk",
        "First test",
        "Requested",
    )
    sent = server.last("POST", RUNS)
    assert sent.streamed and int(sent.headers["Content-Length"]) == len(sent.body)
    fields, files = sent.multipart()
    assert fields == {
        "run_name": ["First test"],
        "training_type": ["Custom"],
        "python_version": ["3.9"],
        "description": ["LightGBM on the breast-cancer data"],
        "training_reference": ["train_model"],
    }
    assert [(field, name) for field, name, _ in files] == [
        ("train_data", "dados.csv"),
        ("source", "train.py"),
        ("requirements", "requirements.txt"),
        ("env", ".env"),
        ("extra", "utils.py"),
    ]
    assert files[0][2] == b"a,b,target\n1,2,0\n3,4,1\n"
    assert "Training run 3 'First test' (Custom) of experiment 'Teste notebook' requested." in caplog.text


def test_the_guides_keyword_call_leaves_the_function_to_the_servers_default(experiment, server, PATH):
    server.on("POST", RUNS, 201, run_info())
    experiment.run_training(
        run_name="First test",
        train_data=PATH + "dados.csv",
        training_type="Custom",
        source_file=PATH + "train.py",
        requirements_file=PATH + "requirements.txt",
        python_version="3.9",
    )
    fields, _ = server.last("POST", RUNS).multipart()
    assert "training_reference" not in fields and "description" not in fields


def test_missing_files_are_reported_at_once_before_any_request(experiment, server, PATH):
    before = len(server.sent)
    with pytest.raises(InputError) as raised:
        experiment.run_training(
            "First test",
            train_data=PATH + "nope.csv",
            source_file=PATH + "gone.py",
            extra_files=[PATH + "utils.py", PATH + "missing.py"],
            env=42,
        )
    message = str(raised.value)
    for expected in (
        f"train_data: no such file '{PATH}nope.csv'",
        f"source_file: no such file '{PATH}gone.py'",
        "requirements_file: required for a Custom run",
        f"extra_files: no such file '{PATH}missing.py'",
        "env: expected a file path, got int",
    ):
        assert expected in message
    with pytest.raises(InputError) as external:
        experiment.run_training(
            "elsewhere",
            "External",
            X_train=PATH + "X_train.txt",
            model_outputs=PATH + "absent.csv",
            model_metrics=PATH + "no-metrics.json",
            source_file=PATH + "train.py",
        )
    message = str(external.value)
    for expected in (
        "source_file is only used by Custom runs (this one is External)",
        "y_train: required for an External run",
        "model_file: required for an External run",
        f"X_train: no such file '{PATH}X_train.txt'",
        f"model_outputs: no such file '{PATH}absent.csv'",
        f"model_metrics: no such file '{PATH}no-metrics.json'",
    ):
        assert expected in message
    assert len(server.sent) == before


def test_automl_run_as_the_guide_calls_it(experiment, server, PATH, tmp_path):
    (tmp_path / "conf.json").write_text('{"model_flow": "classification", "target": "target"}')
    server.on("POST", RUNS, 201, run_info(5, training_type="AutoML"))
    PATH_AUTOML = str(tmp_path) + "/"
    run = experiment.run_training(
        run_name="First test",
        training_type="AutoML",
        train_data=PATH + "dados.csv",
        conf_dict=PATH_AUTOML + "conf.json",
    )
    assert (run.exec_id, run.training_type) == (5, "AutoML")
    fields, files = server.last("POST", RUNS).multipart()
    assert fields == {"run_name": ["First test"], "training_type": ["AutoML"]}  # the platform's Python
    assert [(field, name) for field, name, _ in files] == [
        ("train_data", "dados.csv"),
        ("conf_dict", "conf.json"),
    ]

    experiment.run_training(
        "as a dict", "automl", train_data=PATH + "dados.csv", conf_dict={"target": "target"}
    )
    fields, _ = server.last("POST", RUNS).multipart()
    assert json.loads(fields["conf_dict"][0]) == {"target": "target"}


def test_arguments_of_another_kind_of_run_and_unknown_types_are_clear_errors(experiment, server, PATH):
    before = len(server.sent)
    with pytest.raises(InputError) as automl:
        experiment.run_training(
            "auto", "AutoML", source_file=PATH + "train.py", requirements_file=PATH + "x.txt"
        )
    assert str(automl.value) == (
        "source_file is only used by Custom runs (this one is AutoML); "
        "requirements_file is only used by Custom and External runs (this one is AutoML); "
        "train_data: required for an AutoML run; conf_dict: required for an AutoML run (conf.json, or a dict)"
    )
    with pytest.raises(InputError, match=r"^conf_dict is only used by AutoML runs \(this one is Custom\)"):
        experiment.run_training(
            "c", train_data=PATH + "dados.csv", conf_dict={"a": 1}, source_file=PATH + "train.py",
            requirements_file=PATH + "requirements.txt",
        )  # fmt: skip
    with pytest.raises(InputError) as old_order:
        experiment.run_training("First test", PATH + "dados.csv")  # the 2022 guide's order
    assert "training_type must be 'Custom', 'External' or 'AutoML'" in str(old_order.value)
    assert "(the training data goes in train_data=)" in str(old_order.value)
    assert len(server.sent) == before


def test_promote_an_automl_run_with_a_name_and_the_operation(run, server):
    server.on("POST", f"{RUNS}/3/promote", 201, model_info(operation="Async"))
    model = run.promote_model("Teste notebook promoted autoML", operation="Async", wait_for_ready=False)
    assert model.operation == "Async"
    fields, files = server.last("POST", f"{RUNS}/3/promote").multipart()
    assert fields == {"name": ["Teste notebook promoted autoML"], "operation": ["Async"]} and files == []


def test_external_run_from_files_with_json_metrics_and_a_params_file(experiment, server, PATH, tmp_path):
    (tmp_path / "params.json").write_text('{"max_iter": 3000}')
    server.on("POST", RUNS, 201, run_info(2, training_type="External"))
    experiment.run_training(
        "elsewhere",
        "External",
        python_version="3.11",
        requirements_file=PATH + "requirements.txt",
        X_train=PATH + "X_train.csv",
        y_train=Path(PATH) / "y_train.parquet",
        model_outputs=PATH + "output.csv",
        model_file=PATH + "model.pkl",
        model_metrics={"auc": 0.97, "f1_score": 0.9},
        model_params=tmp_path / "params.json",
    )
    fields, files = server.last("POST", RUNS).multipart()
    assert fields["training_type"] == ["External"] and fields["python_version"] == ["3.11"]
    assert json.loads(fields["metrics"][0]) == {"auc": 0.97, "f1_score": 0.9}
    assert "training_reference" not in fields
    assert [(field, name) for field, name, _ in files] == [
        ("X_train", "X_train.csv"),
        ("y_train", "y_train.parquet"),
        ("model_output", "output.csv"),
        ("model", "model.pkl"),
        ("params", "params.json"),
        ("requirements", "requirements.txt"),
    ]


def test_external_run_of_an_unsupervised_experiment_needs_no_target(client, server, PATH):
    server.on("GET", EXPERIMENT, 200, experiment_info(model_type="Unsupervised"))
    server.on("POST", RUNS, 201, run_info(training_type="External"))
    experiment = client.get_training(T_HASH)
    experiment.run_training(
        "clusters",
        "External",
        requirements_file=PATH + "requirements.txt",
        X_train=PATH + "X_train.csv",
        model_outputs=PATH + "output.csv",
        model_file=PATH + "model.pkl",
    )
    _, files = server.last("POST", RUNS).multipart()
    assert "y_train" not in [field for field, _, _ in files]


def test_external_tables_as_objects_are_written_to_temporary_files(experiment, server, PATH):
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    server.on("POST", RUNS, 201, run_info(training_type="External"))
    X = pd.DataFrame({"radius": [14.1, 20.5], 3: [1, 2]})
    experiment.run_training(
        "objects",
        "External",
        requirements_file=PATH + "requirements.txt",
        X_train=X,
        y_train=pd.Series([0, 1], name="target"),
        model_outputs=np.array([0.1, 0.9]),
        model_file=PATH + "model.pkl",
    )
    _, files = server.last("POST", RUNS).multipart()
    tables = {field: (name, content) for field, name, content in files if field != "model"}
    suffix = ".parquet" if training.importlib.util.find_spec("pyarrow") else ".csv"
    assert {field: name for field, (name, _) in tables.items() if field != "requirements"} == {
        "X_train": "X_train" + suffix,
        "y_train": "y_train" + suffix,
        "model_output": "model_output" + suffix,
    }
    with pytest.raises(
        InputError, match="^X_train: expected a file path .* got int; model_file: no such file"
    ):
        experiment.run_training(
            "bad", "External", X_train=5, y_train=[0, 1], model_outputs=[1, 2], model_file="x.pkl"
        )
    if suffix == ".csv":
        assert tables["X_train"][1] == b"radius,3\n14.1,1\n20.5,2\n"
        assert tables["y_train"][1] == b"target\n0\n1\n"
        assert tables["model_output"][1] == b"0\n0.1\n0.9\n"


def test_tables_without_pandas_are_written_as_csv(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas → ImportError
    problems = []
    path = training._table("model_outputs", [[0, 0.1], [1, 0.9]], tmp_path, "model_output", problems)
    assert problems == [] and path.name == "model_output.csv"
    assert path.read_text() == "0,1\n0,0.1\n1,0.9\n"
    assert training._table("y_train", 5, tmp_path, "y_train", problems) is None
    assert problems == [
        "y_train: expected a file path (.csv or .parquet), a pandas DataFrame or Series, or an array; got int"
    ]


def test_run_training_waits_when_asked(experiment, server, PATH, sleeps):
    server.on("POST", RUNS, 201, run_info())
    statuses = answers("Requested", "Running", "Succeeded")
    server.handle(
        "GET",
        f"{RUNS}/1/status",
        lambda sent: (200, {"trainingExecutionId": 1, "Status": statuses(), "Message": None}, {}),
    )
    run = experiment.run_training(
        "First test",
        train_data=PATH + "dados.csv",
        source_file=PATH + "train.py",
        requirements_file=PATH + "requirements.txt",
        wait_complete=True,
    )
    assert run.status == "Succeeded" and sleeps == [0.5, 0.75]


# Requirements generated from a pickle -------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 2, 4, pickle.HIGHEST_PROTOCOL])
def test_requirements_from_a_pickle_pin_the_distributions_its_modules_come_from(
    tmp_path, monkeypatch, protocol
):
    (tmp_path / "neomaril_local_helpers.py").write_text("class Scaler:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import neomaril_local_helpers  # a module of the user's, not installed

    model = {
        "headers": requests.structures.CaseInsensitiveDict(a=1),  # requests
        "local": neomaril_local_helpers.Scaler(),  # no distribution provides it
        "stdlib": [Path("x"), json.JSONDecoder, logging.getLogger],  # the interpreter's own
    }
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    assert requirements_from_pickle(path) == ([REQUESTS_PIN], ["neomaril_local_helpers"])
    assert ("neomaril_local_helpers", "Scaler") in training.pickled_globals(path.read_bytes())


def test_distributions_without_top_level_txt_are_found_by_their_files(tmp_path, monkeypatch):
    # Wheels built with meson-python or scikit-build-core (numpy, scikit-learn, LightGBM)
    # list their modules only in RECORD; Python 3.10's packages_distributions misses them.
    (tmp_path / "neomaril_meson_mod").mkdir()
    (tmp_path / "neomaril_meson_mod" / "__init__.py").write_text("class Booster:\n    pass\n")
    info = tmp_path / "neomaril_meson_dist-2.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: neomaril-meson-dist\nVersion: 2.0.1\n")
    (info / "RECORD").write_text(
        "neomaril_meson_mod/__init__.py,,\nneomaril_meson_dist-2.0.1.dist-info/METADATA,,\n../../bin/tool,,\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import neomaril_meson_mod

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(neomaril_meson_mod.Booster(), protocol=4))
    assert requirements_from_pickle(path) == (["neomaril-meson-dist==2.0.1"], [])


def test_globals_are_read_through_the_memo():
    # Protocol 4 names a module once; its next class fetches the name from the memo (BINGET).
    data = pickle.dumps(
        [
            requests.structures.CaseInsensitiveDict(),
            collections.OrderedDict(),
            requests.structures.LookupDict("x"),
        ],
        protocol=4,
    )
    assert "BINGET" in [op.name for op, _, _ in pickletools.genops(data)]
    assert training.pickled_globals(data) == [
        ("requests.structures", "CaseInsensitiveDict"),
        ("collections", "OrderedDict"),
        ("requests.structures", "LookupDict"),
    ]
    assert training.pickled_globals(pickle.dumps(collections.OrderedDict(), protocol=0)) == [
        ("collections", "OrderedDict")
    ]


# log_train ---------------------------------------------------------------------------------


class Figure:
    """Stands in for a matplotlib figure."""

    def __init__(self):
        self.saved = []

    def savefig(self, target, format=None):
        self.saved.append(format)
        Path(target).write_bytes(b"\x89PNG fake")


def test_log_train_uploads_an_external_run_on_a_clean_exit(experiment, server, PATH, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    server.on("POST", RUNS, 201, run_info(4, run_name="Teste 1", training_type="External"))
    figure = Figure()
    model = requests.structures.CaseInsensitiveDict(fitted=True)  # any picklable model will do

    with experiment.log_train("Teste 1", PATH + "X_train.csv", PATH + "y_train.parquet") as logger:
        folder = logger.folder
        logger.save_model(model)
        logger.add_extra(PATH + "utils.py")
        logger.save_and_add_plot(figure, "graphic1")
        logger.save_model_output(PATH + "output.csv")
        logger.save_metric(name="auc", value=0.97)
        logger.save_metric("f1_score", 0.9)
        logger.add_params({"max_iter": 3000}, seed=7)
        assert logger.python_version == f"{sys.version_info[0]}.{sys.version_info[1]}"
        logger.set_python_version("3.10")

    assert not folder.exists()  # the temporary files are gone
    assert isinstance(logger.execution, NeomarilTrainingExecution) and logger.execution.exec_id == 4
    fields, files = server.last("POST", RUNS).multipart()
    assert fields["run_name"] == ["Teste 1"] and fields["training_type"] == ["External"]
    assert fields["python_version"] == ["3.10"]
    assert json.loads(fields["metrics"][0]) == {"auc": 0.97, "f1_score": 0.9}
    assert json.loads(fields["params"][0]) == {"max_iter": 3000, "seed": 7}
    by_field = {}
    for field, name, content in files:
        by_field.setdefault(field, []).append((name, content))
    assert by_field["X_train"] == [("X_train.csv", b"a,b\n1,2\n3,4\n")]
    assert by_field["model_output"][0][0] == "output.csv"
    assert pickle.loads(by_field["model"][0][1]) == model  # noqa: S301  (the bytes we just pickled)
    assert [name for name, _ in by_field["extra"]] == ["utils.py", "graphic1.png"] and figure.saved == ["png"]
    name, requirements = by_field["requirements"][0]
    assert name == "requirements.txt"
    assert requirements.decode().splitlines()[1:] == [REQUESTS_PIN]
    assert f"generated one from the modules model.pkl refers to: {REQUESTS_PIN}" in caplog.text


def test_log_train_uses_the_requirements_it_is_given(experiment, server, PATH):
    server.on("POST", RUNS, 201, run_info(training_type="External"))
    with experiment.log_train("given", PATH + "X_train.csv", PATH + "y_train.parquet", "a note") as logger:
        logger.save_model({"weights": [1, 2]})
        logger.save_model_output(PATH + "output.csv")
        logger.set_requirements(PATH + "requirements.txt")
    fields, files = server.last("POST", RUNS).multipart()
    assert fields["description"] == ["a note"]
    assert [content for field, _, content in files if field == "requirements"] == [b"scikit-learn==1.6.1\n"]


def test_log_train_uploads_nothing_when_the_block_raises(experiment, server, PATH):
    before = len(server.sent)
    blocks = experiment.log_train("broken", PATH + "X_train.csv", PATH + "y_train.parquet")
    with pytest.raises(ZeroDivisionError), blocks as logger:
        logger.save_model({"weights": [1, 2]})
        folder = logger.folder
        1 / 0  # noqa: B018
    assert len(server.sent) == before and not folder.exists()
    assert logger.execution is None


def test_log_train_without_a_model_says_what_to_call(experiment, server, PATH):
    before = len(server.sent)
    with pytest.raises(InputError) as raised, experiment.log_train(
        "empty", PATH + "X_train.csv", PATH + "y_train.parquet"
    ):
        pass
    assert str(raised.value) == (
        "log_train 'empty': nothing was uploaded; call logger.save_model(model) and "
        "logger.save_model_output(output) inside the block."
    )
    assert len(server.sent) == before


# Runs: status, polling, logs, downloads -----------------------------------------------------


@pytest.fixture
def run(experiment, server) -> NeomarilTrainingExecution:
    server.on("GET", f"{RUNS}/3", 200, run_info(3, status="Running"))
    return experiment.get_training_execution(3)


def test_get_status_is_the_original_products_dict(run, server):
    answer = {"trainingExecutionId": 3, "Status": "Running", "Message": None}
    server.on("GET", f"{RUNS}/3/status", 200, answer)
    assert run.get_status() == answer and run.status == "Running"
    server.on("GET", f"{RUNS}/3", 200, run_info(3, status="Succeeded", metrics={"auc": 0.97}))
    assert run.execution_data["metrics"] == {"auc": 0.97} and run.status == "Succeeded"
    assert run.execution_info()["number"] == 3
    server.on("GET", f"{RUNS}/3/logs", 200, {"number": 3, "status": "Succeeded", "log": "line 1\nline 2\n"})
    assert run.get_logs() == "line 1\nline 2\n"


def test_wait_ready_polls_with_backoff(run, server, sleeps, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    statuses = answers("Requested", "Running", "Running", "Running", "Succeeded")
    server.handle(
        "GET",
        f"{RUNS}/3/status",
        lambda sent: (200, {"trainingExecutionId": 3, "Status": statuses(), "Message": None}, {}),
    )
    assert run.wait_ready() is run
    assert sleeps == [0.5, 0.75, 1.125, 1.6875]  # base.backoff: 0.5 s, ×1.5
    # One line a new status, told as this module's wait_ready (base.wait_finished polls).
    assert [(r.name, r.funcName, r.getMessage()) for r in caplog.records] == [
        ("neomaril_codex.training", "wait_ready", f"Training run 3 of {T_HASH}: {status}")
        for status in ("Requested", "Running", "Succeeded")
    ]


def test_wait_ready_raises_the_error_and_the_log_tail_when_the_run_failed(run, server, sleeps):
    server.on(
        "GET",
        f"{RUNS}/3/status",
        200,
        {"trainingExecutionId": 3, "Status": "Failed", "Message": "call: KeyError: 'target'"},
    )
    log = "".join(f"line {i}\n" for i in range(60)) + "KeyError: 'target'\n"
    server.on("GET", f"{RUNS}/3/logs", 200, {"number": 3, "status": "Failed", "log": log})
    with pytest.raises(ExecutionError) as raised:
        run.wait_ready()
    assert isinstance(raised.value, TrainingError)  # the original's name for training failures
    assert type(raised.value) is TrainingRunError
    message = str(raised.value)
    assert message.startswith(
        f"Training run 3 'First test' of experiment {T_HASH} failed: call: KeyError: 'target'"
    )
    assert message.endswith("line 59\nKeyError: 'target'") and "line 20\n" not in message
    assert (
        raised.value.log.splitlines()[-1] == "KeyError: 'target'" and len(raised.value.log.splitlines()) == 40
    )
    assert sleeps == []


def test_wait_ready_times_out(run, server, sleeps):
    server.on(
        "GET", f"{RUNS}/3/status", 200, {"trainingExecutionId": 3, "Status": "Running", "Message": None}
    )
    with pytest.raises(WaitTimeout, match=f"Training run 3 of {T_HASH} is still Running after 0 s"):
        run.wait_ready(timeout=0)


def test_download_result_names_the_zip_as_the_server_does(run, server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    zipped = b"PK\x03\x04 a zip"
    server.on(
        "GET",
        f"{RUNS}/3/artifacts",
        200,
        zipped,
        {
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="training-{T_HASH}-3.zip"',
        },
    )
    saved = run.download_result()
    assert saved == f"training-{T_HASH}-3.zip" and (tmp_path / saved).read_bytes() == zipped
    assert f"Output saved in training-{T_HASH}-3.zip" in caplog.text
    other = run.download_result(str(tmp_path / "out"), "run3.zip")
    assert other == str(tmp_path / "out" / "run3.zip") and Path(other).read_bytes() == zipped
    assert not list((tmp_path / "out").glob("*.part"))


def test_an_interrupted_download_leaves_no_file(run, server, tmp_path, monkeypatch):
    server.on("GET", f"{RUNS}/3/artifacts", 200, b"PK\x03\x04", {"Content-Type": "application/zip"})

    def dropped(response, chunk_size=1):
        yield b"PK"
        raise requests.exceptions.ChunkedEncodingError("connection dropped")

    monkeypatch.setattr(requests.Response, "iter_content", dropped)
    with pytest.raises(NetworkError, match="dropped before the whole file arrived"):
        run.download_result(str(tmp_path / "out"))
    assert list((tmp_path / "out").iterdir()) == []


def test_download_result_before_the_end_is_the_servers_409(run, server):
    detail = "Run 3 is Running; its artifacts are ready once it has finished."
    server.on("GET", f"{RUNS}/3/artifacts", 409, {"detail": detail, "code": "conflict"})
    with pytest.raises(StateError) as raised:
        run.download_result()
    assert str(raised.value) == detail and not list(Path.cwd().glob("*.zip*"))


def test_latest_and_all_executions_and_compare(experiment, server):
    runs = [run_info(2, status="Failed"), run_info(1, status="Succeeded")]
    for summary in runs:
        del summary["group"]  # summaries don't carry it: the experiment's is used
    server.on("GET", EXPERIMENT, 200, experiment_info(runs=runs))
    server.on("GET", f"{RUNS}/2", 200, run_info(2, status="Failed"))
    assert experiment.get_training_execution().exec_id == 2
    assert experiment.executions == [1, 2]
    everything = experiment.get_all_training_executions()
    assert [(r.exec_id, r.status, r.group) for r in everything] == [
        (1, "Succeeded", "datarisk"),
        (2, "Failed", "datarisk"),
    ]
    assert experiment.training_data["runs"] == runs
    rows = [{"number": 1, "metrics": {"auc": 0.9}}, {"number": 2, "metrics": None}]
    server.on("GET", RUNS, 200, {"metrics": ["auc"], "runs": rows, "sort": "auc", "order": "desc"})
    assert experiment.compare("auc") == rows
    assert server.last("GET", RUNS).path == f"{RUNS}?order=desc&sort=auc"
    experiment.compare(order="asc")
    assert server.last("GET", RUNS).path == f"{RUNS}?order=asc"
    with pytest.raises(InputError, match="order must be 'asc' or 'desc'"):
        experiment.compare("auc", "up")


def test_no_runs_yet(experiment, server):
    with pytest.raises(NotFoundError, match="has no runs yet"):
        experiment.get_training_execution()


# promote_model -----------------------------------------------------------------------------


def test_promote_model_as_the_guide_calls_it(run, server, PATH, sleeps, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    server.on("POST", f"{RUNS}/3/promote", 201, model_info(name="Teste notebook promoted custom"))
    statuses = answers("Building", "Deployed")
    server.handle("GET", f"/api/v1/models/{M_HASH}/status", lambda sent: (200, {"status": statuses()}, {}))

    # fmt: off
    model = run.promote_model('Teste notebook promoted custom', # model_name
                              'score', # name of the scoring function
                              PATH+'app.py', # Path of the source file
                              schema=PATH+'schema.json', # Path of the schema file, but it could be a dict (only required for Sync models)
                              operation="Sync" # Can be Sync or Async
    )
    # fmt: on

    assert isinstance(model, NeomarilModel) and model.model_hash == M_HASH
    assert model.name == "Teste notebook promoted custom" and model.status() == "Deployed"
    sent = server.last("POST", f"{RUNS}/3/promote")
    fields, files = sent.multipart()
    assert fields == {
        "name": ["Teste notebook promoted custom"],
        "operation": ["Sync"],
        "model_reference": ["score"],
    }
    assert [(field, name) for field, name, _ in files] == [("source", "app.py"), ("schema", "schema.json")]
    assert sleeps == [0.25]  # model.wait_ready: every 0.25 s at first
    assert (
        f"Training run 3 of {T_HASH} promoted to model 'Teste notebook promoted custom' ({M_HASH})"
        in caplog.text
    )


def test_promote_model_with_every_option(run, server, PATH):
    server.on("POST", f"{RUNS}/3/promote", 201, model_info(operation="Async"))
    model = run.promote_model(
        "batch",
        "score",
        PATH + "app.py",
        {"radius": 14.1},
        [PATH + "utils.py"],
        PATH + "requirements.txt",
        PATH + ".env",
        "async",
        "csv",
        False,
    )
    assert model.operation == "Async"
    fields, files = server.last("POST", f"{RUNS}/3/promote").multipart()
    assert fields == {
        "name": ["batch"],
        "operation": ["Async"],
        "model_reference": ["score"],
        "input_type": ["csv"],
        "schema": ['{"radius": 14.1}'],
    }
    assert [(field, name) for field, name, _ in files] == [
        ("source", "app.py"),
        ("requirements", "requirements.txt"),
        ("env", ".env"),
        ("extra", "utils.py"),
    ]


def test_promoting_a_run_that_has_not_succeeded_is_the_servers_409(run, server, PATH):
    detail = "Run 3 of experiment 'Teste notebook' is Failed: call: KeyError: 'target'; only a Succeeded run can be promoted."
    server.on("POST", f"{RUNS}/3/promote", 409, {"detail": detail, "code": "conflict"})
    with pytest.raises(StateError) as raised:
        run.promote_model("m", "score", PATH + "app.py", schema=PATH + "schema.json")
    assert str(raised.value) == detail and raised.value.status_code == 409


def test_promote_model_reports_missing_files_and_a_bad_operation_before_sending(run, server, PATH):
    before = len(server.sent)
    with pytest.raises(InputError) as raised:
        run.promote_model(
            "m", "score", PATH + "nope.py", schema=PATH + "nope.json", extra_files=PATH + "gone.py"
        )
    assert str(raised.value) == (
        f"source_file: no such file '{PATH}nope.py'; schema: no such file '{PATH}nope.json'; "
        f"extra_files: no such file '{PATH}gone.py'"
    )
    with pytest.raises(InputError, match="operation must be 'Sync' or 'Async'"):
        run.promote_model("m", "score", PATH + "app.py", operation="Batch")
    assert len(server.sent) == before


def test_promote_model_checks_its_files_as_create_model_does(run, server, PATH):
    before = len(server.sent)
    with pytest.raises(InputError) as raised:
        run.promote_model(
            "m", "score", 42, schema=PATH + "nope.json", requirements_file="r.txt", env=PATH + ".nope"
        )
    assert str(raised.value) == (
        "source_file: expected a file path, got int; requirements_file: no such file 'r.txt'; "
        f"schema: no such file '{PATH}nope.json'; env: no such file '{PATH}.nope'"
    )
    assert len(server.sent) == before
    server.on("POST", f"{RUNS}/3/promote", 201, model_info())
    run.promote_model("m", "score", PATH + "app.py", schema=[{"radius": 14.1}], wait_for_ready=False)
    fields, files = server.last("POST", f"{RUNS}/3/promote").multipart()
    assert fields["schema"] == ['[{"radius": 14.1}]'] and [f for f, _, _ in files] == ["source"]


def version_body(**overrides):
    body = {
        "model": M_HASH,
        "version": 2,
        "live": False,
        "hash": "M" + "c" * 32,
        "status": "Ready",
        "status_message": "",
        "operation": "Sync",
        "training_run": {"experiment": T_HASH, "number": 3},
        "run_url": f"{URL}/api/v1/run/{M_HASH}/versions/2",
    }
    body.update(overrides)
    return body


def test_promote_model_as_the_next_version_of_a_model(run, server, PATH, sleeps, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    server.on("POST", f"{RUNS}/3/promote", 201, version_body())
    server.on("GET", f"/api/v1/models/{M_HASH}", 200, model_info(name="Scorer", version=1))
    statuses = answers("Building", "Deployed")
    server.handle(
        "GET",
        f"/api/v1/models/{M_HASH}/versions/2/status",
        lambda sent: (200, {"hash": "M" + "c" * 32, "version": 2, "status": statuses()}, {}),
    )
    server.on("GET", f"/api/v1/models/{M_HASH}/versions/2", 200, version_body(status="Deployed", live=True))

    version = run.promote_model(
        None, "score", PATH + "app.py", schema=PATH + "schema.json", version_of=M_HASH
    )

    assert isinstance(version, NeomarilModelVersion)
    assert (version.model_hash, version.version, version.status, version.live) == (
        M_HASH,
        2,
        "Deployed",
        True,
    )
    assert version.model.name == "Scorer"
    fields, files = server.last("POST", f"{RUNS}/3/promote").multipart()
    # No name and no operation: a version has its model's (the server refuses another operation).
    assert fields == {"version_of": [M_HASH], "model_reference": ["score"]}
    assert [(field, name) for field, name, _ in files] == [("source", "app.py"), ("schema", "schema.json")]
    assert f"Training run 3 of {T_HASH} promoted to version 2 of model 'Scorer' ({M_HASH})" in caplog.text


def test_promote_model_as_a_version_of_a_model_object_with_its_operation(run, server, PATH):
    model = NeomarilModel(run._conn, model_info(operation="Async"))
    server.on("POST", f"{RUNS}/3/promote", 201, version_body(operation="Async"))
    before = len(server.sent)
    version = run.promote_model(
        "ignored", "score", PATH + "app.py", operation="async", wait_for_ready=False, version_of=model
    )
    assert version.model is model and version.operation == "Async" and version.status == "Ready"
    fields, _ = server.last("POST", f"{RUNS}/3/promote").multipart()
    assert fields == {"version_of": [M_HASH], "operation": ["Async"], "model_reference": ["score"]}
    assert [s.method for s in server.sent[before:]] == ["POST"]  # nothing fetched: the model was given


def test_promote_model_needs_a_name_or_a_model_to_version(run, server, PATH):
    before = len(server.sent)
    with pytest.raises(InputError, match="model_name: required, unless version_of="):
        run.promote_model(None, "score", PATH + "app.py")
    assert len(server.sent) == before
    refused = f"Model '{M_HASH}' belongs to group others; this run's versions can only go to models of group datarisk."
    server.on(
        "POST",
        f"{RUNS}/3/promote",
        400,
        {"detail": f"version_of: {refused}", "code": "invalid", "errors": {"version_of": [refused]}},
    )
    with pytest.raises(InputError) as raised:
        run.promote_model(None, "score", PATH + "app.py", version_of=M_HASH)
    assert raised.value.errors == {"version_of": [refused]}
