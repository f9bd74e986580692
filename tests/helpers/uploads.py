"""Multipart payloads for model uploads in tests."""

from __future__ import annotations

import io
import json

SYNC_SOURCE = """
import json
import os


def score(data, base_path):
    payload = json.loads(data)
    return {"sum": payload["a"] + payload["b"], "secret_ok": os.environ.get("API_KEY") == "s3cr3t-value"}
"""


def file(name: str, content: str | bytes) -> io.BytesIO:
    stream = io.BytesIO(content.encode() if isinstance(content, str) else content)
    stream.name = name
    return stream


def sync_payload(**overrides) -> dict:
    payload = {
        "name": "Teste Sync",
        "group": "datarisk",
        "operation": "Sync",
        "model_reference": "score",
        "python_version": "3.9",
        "source": file("app.py", SYNC_SOURCE),
        "model": file("model.pkl", b"\x80\x04K\x01."),
        "requirements": file("requirements.txt", "# nothing needed\n"),
        "schema": file("schema.json", json.dumps({"a": 1, "b": 2})),
    }
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not None}
