"""A monitoring period's cost: the platform's run_period against the bare preprocess loop.

Sets up a throw-away data folder and database, a reference run (X_train and model_output
of 5,000 rows), a Sync model and its registration (validated through the real sandbox),
then records ``--calls`` calls of one row each, as the web process records them, and
times, in one run:

- ours: ``monitors.tasks.run_period`` — records read in pages, batches of
  NEOMARIL_MONITORING_BATCH_SIZE through the sandboxed harness in the model's
  environment, counted in the reference's bins, results stored;
- bare: the same preprocess called on every record in one plain process of the same
  environment (no sandbox, no batches, no counting, nothing stored): the floor.

    .venv/bin/python bench/monitoring.py [--calls 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from inprocess import setup_django  # noqa: E402  (bench/ is this script's folder)

setup_django()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from groups.models import Group  # noqa: E402
from models_app import environments  # noqa: E402
from models_app import tasks as model_tasks  # noqa: E402
from models_app.models import MLModel  # noqa: E402
from monitoring.models import PredictionRecord  # noqa: E402
from monitors import services, tasks  # noqa: E402
from monitors.forms import MonitoringForm  # noqa: E402
from training.models import Experiment, TrainingRun  # noqa: E402

REQUIREMENTS = ["pandas==2.2.3", "pyarrow==17.0.0"]
REFERENCE_ROWS = 5000
PREPROCESS = """
import json
import pandas as pd


def parse(input, output):
    given = json.loads(input)
    answers = json.loads(output)
    rows = given if isinstance(given, list) else [given]
    return pd.DataFrame(rows), pd.DataFrame(answers if isinstance(answers, list) else [answers])
"""
BARE = r"""
import json, sys, time
import pandas as pd
sys.path.insert(0, sys.argv[1])
from preprocess import parse
records = [json.loads(line) for line in open(sys.argv[2])]
started = time.perf_counter()
features, outputs = zip(*(parse(r["input"], r["output"]) for r in records))
pd.concat(features), pd.concat(outputs)
print(time.perf_counter() - started)
"""


def row(i: int) -> dict:
    return {"a": i % 1000, "b": (i * 7) % 1000, "c": "ABC"[i % 3], "d": (i % 97) / 97}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    env_path, _ = model_tasks.prepare_environment("3.11", REQUIREMENTS, lambda line: None)
    python = environments.env_python(env_path)

    owner = get_user_model().objects.create_user("bench")
    group = Group.objects.create(name="bench")
    experiment = Experiment.objects.create(name="bench", group=group, model_type="Classification")
    run = TrainingRun.objects.create(
        experiment=experiment, number=1, name="reference", training_type="External", status="Succeeded",
        python_version="3.11",
    )  # fmt: skip
    run.artifacts_folder.mkdir(parents=True)
    reference_file = Path(tempfile.mkdtemp()) / "reference.json"
    reference_file.write_text(json.dumps([row(i) for i in range(REFERENCE_ROWS)]))
    subprocess.run(
        [str(python), "-c", (
            "import json, sys, pandas as pd; X = pd.DataFrame(json.load(open(sys.argv[1]))); "
            "X.to_parquet(sys.argv[2] + '/X_train.parquet'); "
            "pd.DataFrame({'pred': (X['a'] >= 500).astype(int)}).to_parquet(sys.argv[2] + '/model_output.parquet')"
        ), str(reference_file), str(run.artifacts_folder)],
        check=True,
    )  # fmt: skip
    model = MLModel.objects.create(
        name="bench", group=group, operation="Sync", model_reference="score", python_version="3.11",
        input_type="json", source_file="app.py", model_file="model.pkl", requirements_file="requirements.txt",
        status="Deployed", schema=row(1), smoke_result={"pred": 0}, requirements=REQUIREMENTS, training_run=run,
    )  # fmt: skip
    model.folder.mkdir(parents=True)
    (model.folder / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    config = {"Period": "Year", "TrainData": {"TrainDateRef": "2026-01-01"}, "InputCols": ["a", "b", "c", "d"],
              "OutputCols": ["pred"]}  # fmt: skip
    form = MonitoringForm(
        {"preprocess_reference": "parse"},
        {
            "configuration": SimpleUploadedFile("c.json", json.dumps(config).encode()),
            "preprocess": SimpleUploadedFile("preprocess.py", PREPROCESS.encode()),
        },
        model=model,
    )
    assert form.is_valid(), form.errors
    monitor = services.register(model, owner, form)
    assert tasks.validate_monitor(monitor.pk) == "Validated", monitor.log

    now = timezone.now()
    calls = [row(i) for i in range(args.calls)]
    PredictionRecord.objects.bulk_create(
        [
            PredictionRecord(model=model, at=now, status_code=200, latency_ms=1.0, input=json.dumps(r),
                             output=json.dumps({"pred": int(r["a"] >= 500)}))
            for r in calls
        ],
        batch_size=2000,
    )  # fmt: skip
    records = Path(tempfile.mkdtemp()) / "records.jsonl"
    with open(records, "w") as out:
        for r in PredictionRecord.objects.filter(model=model).values("input", "output"):
            out.write(json.dumps(r) + "\n")

    ours, bare = [], []
    for _ in range(args.repeat):
        period = services.request_period(monitor, now, owner)
        started = time.perf_counter()
        outcome = tasks.run_period(period.pk)
        ours.append(time.perf_counter() - started)
        assert outcome == "Succeeded", outcome
        measured = subprocess.run(
            [str(python), "-c", BARE, str(monitor.code_folder), str(records)],
            check=True,
            capture_output=True,
            text=True,
        )
        bare.append(float(measured.stdout))
    period.refresh_from_db()
    ours_s, bare_s = statistics.median(ours), statistics.median(bare)
    print(f"calls: {args.calls} (one row each), batch size {settings.MONITORING_BATCH_SIZE}, "
          f"{len(config['InputCols'])} input + 1 output columns; median of {args.repeat}")  # fmt: skip
    print(
        f"ours (run_period, sandboxed batches, counted, stored): {ours_s:.2f} s = {args.calls / ours_s:,.0f} calls/s"
    )
    print(
        f"bare (the preprocess loop alone, one plain process):   {bare_s:.2f} s = {args.calls / bare_s:,.0f} calls/s"
    )
    print(
        f"ours / bare: {ours_s / bare_s:.2f}x; period status {period.drift_status}, average PSI {period.average_psi:.4f}"
    )


if __name__ == "__main__":
    main()
