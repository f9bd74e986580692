"""Tiny real scikit-learn models for build tests, trained in the same kind of
environment the platform builds for them (pickles are tied to library versions)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from django.conf import settings

from models_app import environments, interpreters

PYTHON = "3.9"
REQUIREMENTS = "scikit-learn==1.6.1\npandas==2.2.3\n"

TRAIN = textwrap.dedent(
    """
    import pickle, sys
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X[["mean radius", "mean texture", "mean smoothness"]]
    X.columns = ["radius", "texture", "smoothness"]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    with open(sys.argv[1], "wb") as f:
        pickle.dump(model, f)
    """
)

SYNC_SOURCE = textwrap.dedent(
    """
    import json
    import os
    import pickle

    import numpy as np
    import pandas as pd

    with open(os.path.join(os.path.dirname(__file__), "model.pkl"), "rb") as f:
        MODEL = pickle.load(f)


    def score(data, base_path):
        df = pd.DataFrame(data=json.loads(data), index=[0])
        # numpy values on purpose: the platform converts them to plain JSON
        return {
            "pred": MODEL.predict(df)[0],
            "proba": MODEL.predict_proba(df)[0, 1],
            "vector": np.arange(3),
            "secret_ok": os.environ.get("API_KEY") == "s3cr3t-value",
        }
    """
)

ASYNC_SOURCE = textwrap.dedent(
    """
    import os
    import pickle

    import pandas as pd


    def score(data_path, model_path):
        with open(model_path + "/model.pkl", "rb") as f:
            model = pickle.load(f)
        X = pd.read_csv(os.path.join(data_path, os.environ["inputFileName"]))
        df = X.copy()
        df["proba"] = model.predict_proba(X)[:, 1]
        df["pred"] = model.predict(X)
        output = data_path + "/output.csv"
        df.to_csv(output, index=False)
        return output
    """
)

SCHEMA = {"radius": 14.1, "texture": 19.3, "smoothness": 0.096}
SAMPLE_CSV = "radius,texture,smoothness\n14.1,19.3,0.096\n20.5,25.1,0.12\n"


def train_model_pickle(folder: Path, train: str = TRAIN) -> Path:
    """Train (the `train` script, given the target path) in a platform-built environment
    for these requirements and return model.pkl."""
    found = interpreters.discover_interpreters(settings.PYTHON_SEARCH_PATHS)
    interpreter = interpreters.find_interpreter(PYTHON, found)
    env = environments.ensure_environment(
        interpreter=interpreter,
        requirements=sorted(REQUIREMENTS.split()),
        envs_dir=settings.ENVS_DIR,
        log=lambda line: None,
        timeout=600,
    )
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.pkl"
    subprocess.run([str(environments.env_python(env)), "-c", train, str(target)], check=True, timeout=120)
    return target


# An Async model reading and writing Parquet (pyarrow on top of the model's requirements).
PARQUET_REQUIREMENTS = REQUIREMENTS + "pyarrow==17.0.0\n"

PARQUET_SOURCE = textwrap.dedent(
    """
    import os
    import pickle

    import pandas as pd


    def score(data_path, model_path):
        name = os.environ["inputFileName"]
        with open(os.path.join(model_path, "model.pkl"), "rb") as f:
            model = pickle.load(f)
        X = pd.read_parquet(os.path.join(data_path, name))
        print("read %d rows from %s" % (len(X), name))
        df = X.copy()
        df["proba"] = model.predict_proba(X)[:, 1]
        df["pred"] = model.predict(X)
        df["input_name"] = name
        df["region"] = os.environ["REGION"]
        out = os.path.join(data_path, "scored.parquet")
        df.to_parquet(out, index=False)
        return out
    """
)
