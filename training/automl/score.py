"""Scoring for a model promoted from a Neomaril AutoML run.

The AutoML pipeline takes the raw feature columns (by name) and has predict and
predict_proba, so one scoring file serves every AutoML model: ``score`` for Sync models,
``score_file`` for Async ones. ``model.pkl`` (saved with cloudpickle by the training run)
is loaded from this file's folder, once, on first use.
"""

from __future__ import annotations

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
_MODEL = []


def score(data, base_path):
    """Sync: one record (a JSON object) → {"pred": int, "proba": float}; a list of
    records → {"pred": [...], "proba": [...]}."""
    import pandas as pd

    records = json.loads(data) if isinstance(data, (str, bytes, bytearray)) else data
    if isinstance(records, dict):
        pred, proba = _predict(pd.DataFrame([records]))
        return {"pred": pred[0], "proba": proba[0]}
    if isinstance(records, list) and all(isinstance(record, dict) for record in records):
        if not records:
            return {"pred": [], "proba": []}
        pred, proba = _predict(pd.DataFrame(records))
        return {"pred": pred, "proba": proba}
    raise ValueError("send one record (a JSON object of column: value) or a list of such records")


def score_file(data_path, model_path):
    """Async: score the uploaded csv or parquet file; write it back with "pred" and "proba"
    columns added, as output.csv or output.parquet in data_path; return that path."""
    import pandas as pd

    name = os.environ["inputFileName"]  # noqa: SIM112  (the product's name for it)
    path = os.path.join(data_path, name)
    extension = os.path.splitext(name)[1].lower()
    if extension == ".parquet":
        frame = pd.read_parquet(path)
    elif extension == ".csv":
        separator = _separator(path)
        frame = pd.read_csv(path, sep=separator)
    else:
        raise ValueError(f"the input file {name!r} must be a .csv or a .parquet file")
    pred, proba = _predict(frame)
    frame = frame.assign(pred=pred, proba=proba)
    output = os.path.join(data_path, "output" + extension)
    if extension == ".parquet":
        frame.to_parquet(output, index=False)
    else:
        frame.to_csv(output, sep=separator, index=False)
    return output


def _model():
    if not _MODEL:
        import cloudpickle

        with open(os.path.join(HERE, "model.pkl"), "rb") as f:
            _MODEL.append(cloudpickle.load(f))
    return _MODEL[0]


def _columns(model):
    """The columns the pipeline was fitted on, in order, or None when it does not say."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(name) for name in names]
    schema = os.path.join(HERE, "schema.json")
    if os.path.isfile(schema):
        with open(schema, encoding="utf-8") as f:
            return list(json.load(f))
    return None


def _predict(frame):
    model = _model()
    columns = _columns(model)
    if columns is not None:
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise ValueError(
                f"missing column(s) {', '.join(map(repr, missing))}; the model needs "
                f"{', '.join(map(repr, columns))}"
            )
        frame = frame[columns]
    pred = [int(value) for value in model.predict(frame)]
    proba = [float(value) for value in model.predict_proba(frame)[:, 1]]
    return pred, proba


def _separator(path):
    """The CSV's separator, guessed from its header line (';' files are common); ',' by default."""
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline()
    counts = {separator: header.count(separator) for separator in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","
