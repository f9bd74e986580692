"""AutoML runs: the platform's own training code, configured by the original `conf.json`.

- `config.py` checks the configuration (platform side, before anything runs);
- `search.py` is the training code an AutoML run executes in the sandbox, in the
  environment of `requirements.txt` (the platform's pins), like any Custom run's `app.py`;
- `score.py` is the scoring code of a model promoted from an AutoML run.

The platform never imports `search.py` or `score.py`: it copies them into the run's or
the model's folder.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SEARCH_SCRIPT = HERE / "search.py"
SCORE_SCRIPT = HERE / "score.py"
REQUIREMENTS = HERE / "requirements.txt"
# What the run's folder calls them.
SOURCE_NAME = "automl.py"
CONF_NAME = "automl_conf.json"
TRAINING_FUNCTION = "train_model"
# The promoted model's entrypoints.
SYNC_ENTRYPOINT = "score"
ASYNC_ENTRYPOINT = "score_file"
SCHEMA_ARTIFACT = "extras/schema.json"
