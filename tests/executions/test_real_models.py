"""Executions of real scikit-learn models, built by the real build task in real uv environments.

Slow: the first run downloads scikit-learn, pandas and pyarrow into uv's cache.
"""

from __future__ import annotations

import io
import json
import subprocess

import pandas as pd
import pytest

from executions import tasks
from executions.models import Execution
from models_app import tasks as model_tasks
from models_app.models import MLModel
from models_app.runtime.sandbox import build_runner_env
from tests.helpers import real_models
from tests.helpers.clients import api_client
from tests.helpers.executions import submit
from tests.helpers.uploads import file

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="session")
def model_pickle(tmp_path_factory, django_db_blocker):
    return real_models.train_model_pickle(tmp_path_factory.mktemp("trained")).read_bytes()


def _deploy(cast, model_pickle, **overrides) -> MLModel:
    payload = {
        "name": "Teste Async",
        "group": "datarisk",
        "operation": "Async",
        "model_reference": "score",
        "python_version": real_models.PYTHON,
        "source": file("app.py", real_models.ASYNC_SOURCE),
        "model": file("model.pkl", model_pickle),
        "requirements": file("requirements.txt", real_models.REQUIREMENTS),
        "sample": file("sample.csv", real_models.SAMPLE_CSV),
        **overrides,
    }
    payload = {key: value for key, value in payload.items() if value is not None}
    response = api_client(cast.owner).post("/api/v1/models", payload, format="multipart")
    assert response.status_code == 201, response.json()
    model = MLModel.objects.get(hash=response.json()["hash"])
    model_tasks.build_model(model.builds.get().pk)
    model.refresh_from_db()
    assert model.status == "Deployed", model.builds.get().log
    return model


def _execute(caller, model, name, content) -> Execution:
    response = submit(caller, model, name=name, content=content)
    assert response.status_code == 202, response.json()
    execution = Execution.objects.get(model=model, number=response.json()["execution_id"])
    assert tasks.run_execution(execution.pk) == "Succeeded", Execution.objects.get(pk=execution.pk).log
    execution.refresh_from_db()
    return execution


def test_csv_in_csv_out_with_the_models_columns(cast, caller, model_pickle):
    model = _deploy(cast, model_pickle)
    rows = "radius,texture,smoothness\n" + "".join(
        f"{10 + i % 15},{15 + i % 10},0.{90 + i % 9}\n" for i in range(500)
    )
    execution = _execute(caller, model, "carteira.csv", rows)
    result = caller.get(f"/api/v1/run/{model.hash}/executions/{execution.number}/result")
    assert result.status_code == 200 and result["Content-Type"] == "text/csv"
    assert result["Content-Disposition"] == 'attachment; filename="output.csv"'
    scored = pd.read_csv(io.BytesIO(b"".join(result.streaming_content)))
    assert list(scored.columns) == ["radius", "texture", "smoothness", "proba", "pred"]
    assert len(scored) == 500
    assert scored["pred"].isin([0, 1]).all() and scored["proba"].between(0, 1).all()
    assert execution.input_file == "carteira.csv"
    assert int(result["Content-Length"]) == execution.output_size


def test_parquet_input_with_env_values_and_input_name(cast, caller, model_pickle, tmp_path):
    model = _deploy(
        cast,
        model_pickle,
        name="Teste Parquet",
        source=file("app.py", real_models.PARQUET_SOURCE),
        requirements=file("requirements.txt", real_models.PARQUET_REQUIREMENTS),
        env=file(".env", "REGION=sul\n"),
        sample=None,
        input_type="parquet",
    )
    # The platform has no parquet engine of its own: the model's environment writes and reads it.
    csv_path, parquet_path = tmp_path / "in.csv", tmp_path / "in.parquet"
    csv_path.write_text(real_models.SAMPLE_CSV)
    convert = f"import pandas as pd; pd.read_csv({str(csv_path)!r}).to_parquet({str(parquet_path)!r})"
    subprocess.run([str(model.python), "-c", convert], check=True, timeout=60)

    execution = _execute(caller, model, "lote 7.parquet", parquet_path.read_bytes())
    assert execution.output_file == "scored.parquet"
    assert "[model] read 2 rows from lote 7.parquet" in execution.log
    result = caller.get(f"/api/v1/run/{model.hash}/executions/{execution.number}/result")
    assert result["Content-Type"] == "application/vnd.apache.parquet"
    downloaded = tmp_path / "scored.parquet"
    downloaded.write_bytes(b"".join(result.streaming_content))
    read = f"import pandas as pd; print(pd.read_parquet({str(downloaded)!r}).to_json(orient='records'))"
    # A clean, single-threaded environment, as the platform gives its runners.
    env = build_runner_env({"OMP_NUM_THREADS": "1", "ARROW_NUM_THREADS": "1"}, home=tmp_path)
    out = subprocess.run([str(model.python), "-c", read], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, f"reading the result back failed ({out.returncode}):\n{out.stderr}"
    assert downloaded.read_bytes()[:4] == b"PAR1"
    records = json.loads(out.stdout)
    assert len(records) == 2
    assert {r["input_name"] for r in records} == {"lote 7.parquet"}
    assert {r["region"] for r in records} == {"sul"}  # the decrypted .env value reached the model
    assert all(r["pred"] in (0, 1) for r in records)
