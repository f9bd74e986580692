"""neomaril_codex — the Python SDK of Neomaril.

Deploy a trained model as a service and call it::

    from neomaril_codex.model import NeomarilModelClient

    client = NeomarilModelClient()  # NEOMARIL_URL, NEOMARIL_USER, NEOMARIL_PASSWORD
    model = client.create_model('My model', 'score', 'app.py', 'model.pkl', 'requirements.txt',
                                schema='schema.json', python_version='3.9', group='datarisk')
    model.predict({'key': 'value'})  # with NEOMARIL_GROUP_TOKEN set

Modules: :mod:`neomaril_codex.base` (connection, groups, async executions),
:mod:`neomaril_codex.model` (models), :mod:`neomaril_codex.training` (training
experiments, runs, ``log_train`` and promotion), :mod:`neomaril_codex.exceptions`.

Messages go through the standard ``logging`` module (logger ``neomaril_codex``):
silent by default, shown at INFO in notebooks; ``set_log_level("INFO")`` shows them anywhere.
"""

from __future__ import annotations

__version__ = "0.1.0"

from neomaril_codex._log import set_log_level, setup_notebook_logging  # noqa: E402

__all__ = ["__version__", "set_log_level"]

setup_notebook_logging()
