"""Turning the user's arguments into the fields and files of a multipart upload.

Every upload (a model, a promotion, a training run) checks all of its files before
anything is sent and reports every problem in one InputError: a user who named three
files wrong learns it in one call, not three.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

from neomaril_codex._http import dumps
from neomaril_codex._upload import PathLike
from neomaril_codex.exceptions import InputError


def existing_file(argument: str, value: Any, problems: List[str]) -> Optional[Path]:
    """`value` as the path of an existing file, or None after noting in `problems` why it
    is not one."""
    if not isinstance(value, (str, os.PathLike)):
        problems.append(f"{argument}: expected a file path, got {type(value).__name__}")
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        problems.append(f"{argument}: '{path}' is a folder, not a file")
        return None
    if not path.is_file():
        problems.append(f"{argument}: no such file '{path}'")
        return None
    return path


class Parts:
    """A multipart upload being assembled: its fields, its files, and every problem found,
    so that all of them are reported at once before anything is sent."""

    def __init__(self, fields: List[Tuple[str, str]]) -> None:
        self.fields = fields
        self.files: List[Tuple[str, str, Path]] = []
        self.problems: List[str] = []

    def file(self, field: str, argument: str, value: Any) -> Optional[Path]:
        """The file `value` (the user's argument `argument`) sent in `field`."""
        path = existing_file(argument, value, self.problems)
        if path is not None:
            self.files.append((field, path.name, path))
        return path

    def optional(self, field: str, argument: str, value: Any) -> Optional[Path]:
        """Like :meth:`file`, and nothing when `value` is None."""
        return None if value is None else self.file(field, argument, value)

    def json_file(self, field: str, argument: str, value: Any, folder: Path) -> Optional[Path]:
        """`value` sent as a JSON file in `field`: a dict, written to `folder` as
        ``<field>.json``, or the path of a JSON file."""
        if isinstance(value, dict):
            path = Path(folder) / f"{field}.json"
            path.write_text(dumps(value), encoding="utf-8")
            self.files.append((field, path.name, path))
            return path
        if isinstance(value, (str, os.PathLike)):
            return self.file(field, argument, value)
        self.problems.append(
            f"{argument}: expected a dict or the path of a JSON file, got {type(value).__name__}"
        )
        return None

    def extras(self, values: Union[PathLike, Sequence[PathLike], None]) -> None:
        """The ``extra_files`` argument: one path or several, each sent in ``extra``."""
        if isinstance(values, (str, os.PathLike)):
            values = [values]
        for value in values or []:
            self.file("extra", "extra_files", value)

    def check(self) -> None:
        """Raise InputError with every problem found, if any."""
        if self.problems:
            raise InputError("; ".join(self.problems))
