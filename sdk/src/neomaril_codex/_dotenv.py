"""A small `.env` reader, so the SDK needs no python-dotenv.

Understands what people write in these files: ``KEY=VALUE``, ``export KEY=VALUE``,
comments, single quotes (literal) and double quotes (with ``\\n``, ``\\t``, ``\\"``,
``\\\\`` escapes; may span lines).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Union

_KEY = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def parse_dotenv(text: str) -> Dict[str, str]:
    """The variables of a `.env` file's text, in order; malformed lines are skipped."""
    values: Dict[str, str] = {}
    lines: List[str] = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        match = _KEY.match(line)
        if not match:
            continue
        key, raw = match.group(1), match.group(2).strip()
        if raw.startswith('"'):
            body = raw[1:]
            # A double-quoted value may continue on the next lines until its closing quote.
            end = _closing_quote(body)
            while end is None and i < len(lines):
                body += "\n" + lines[i]
                i += 1
                end = _closing_quote(body)
            values[key] = _unescape(body[:end])
        elif raw.startswith("'"):
            end = raw.find("'", 1)
            values[key] = raw[1:end] if end > 0 else raw[1:]
        else:
            values[key] = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
    return values


def _closing_quote(body: str) -> Optional[int]:
    """Index of the unescaped closing double quote in `body`, or None when there is none."""
    escaped = False
    for index, char in enumerate(body):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return index
    return None


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), value)


def load_dotenv(path: Union[str, os.PathLike[str]]) -> Dict[str, str]:
    """Put the variables of `path` into os.environ, never overriding one already set.

    Returns the variables that were set (empty when the file does not exist).
    """
    file = Path(path)
    if not file.is_file():
        return {}
    loaded = {}
    for key, value in parse_dotenv(file.read_text(encoding="utf-8")).items():
        if key not in os.environ:
            os.environ[key] = value
            loaded[key] = value
    return loaded
