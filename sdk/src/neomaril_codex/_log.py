"""The SDK's logging: quiet in libraries and scripts, informative in notebooks.

Everything goes through the standard ``logging`` module under the ``neomaril_codex``
logger. The package logger has a NullHandler, so an application decides what to show.
Under IPython/Jupyter a handler at INFO is attached on import, because there the
messages ("Execution 5 started…") are the point.
"""

from __future__ import annotations

import logging
import sys
from typing import Optional, Union

LOGGER_NAME = "neomaril_codex"
FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-8s | %(name)s:%(funcName)s:%(lineno)d - %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())


class _SdkHandler(logging.StreamHandler):
    """Marks the handler the SDK attached itself, so it is attached once."""


def in_notebook() -> bool:
    """True when running under IPython or Jupyter (a shell is active, not just installed)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get_ipython = getattr(ipython, "get_ipython", None)
    try:
        return get_ipython is not None and get_ipython() is not None
    except Exception:  # a half-initialised IPython must not break the import
        return False


def _attach_handler() -> logging.Handler:
    for handler in logger.handlers:
        if isinstance(handler, _SdkHandler):
            return handler
    handler = _SdkHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    logger.addHandler(handler)
    return handler


def set_log_level(level: Union[int, str] = "INFO", *, handler: Optional[bool] = True) -> None:
    """Show the SDK's messages from ``level`` up (``"DEBUG"``, ``"INFO"``, ``"WARNING"``…).

    With ``handler=True`` (the default) the SDK attaches its own stderr handler with
    the readable format (time | level | module:function:line - message) if it has not
    yet; pass ``handler=False`` when your application configures logging itself.
    """
    if isinstance(level, str):
        level = level.upper()
    logger.setLevel(level)
    if handler:
        _attach_handler().setLevel(level)


def setup_notebook_logging() -> None:
    """Called on import: INFO messages to the notebook's output under IPython/Jupyter."""
    if in_notebook():
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        _attach_handler()
