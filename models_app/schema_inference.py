"""JSON Schema (OpenAPI 3.0 flavour) inferred from one example value.

Used for a model's own OpenAPI document: the uploaded schema example becomes the
request body's schema, the smoke test's answer the response's.
"""

from __future__ import annotations

from typing import Any

EXTRA_FIELDS_NOTE = (
    "Fields beyond those of the example are accepted and passed to the model unchanged: "
    "the model receives the request body exactly as sent."
)


def infer_schema(value: Any, *, top_level: bool = True) -> dict:
    """The schema of `value`, with `value` as its example (at the top level)."""
    schema = _infer(value)
    if top_level:
        schema["example"] = value
    return schema


# Deeper than this the example still shows the value; its parts are left undescribed
# (uploads refuse deeper examples, but a model's answer is its own).
MAX_DESCRIBED_DEPTH = 32


def _infer(value: Any, depth: int = 0) -> dict:
    if depth > MAX_DESCRIBED_DEPTH:
        return {"description": "Nested too deeply to be described here: see the example."}
    if value is None:
        return {"nullable": True, "description": "null in the example; its type is not known."}
    if isinstance(value, bool):  # before int: bool is an int in Python
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array", "items": _merge([_infer(item, depth + 1) for item in value])}
    if isinstance(value, dict):
        return {
            "type": "object",
            "properties": {str(key): _infer(item, depth + 1) for key, item in value.items()},
            "required": [str(key) for key in value],
            "additionalProperties": True,
            "description": EXTRA_FIELDS_NOTE,
        }
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _merge(schemas: list[dict]) -> dict:
    """One schema for the items of an array: their common type, or any of them."""
    if not schemas:
        return {}
    distinct = []
    for schema in schemas:
        if schema not in distinct:
            distinct.append(schema)
    types = {s.get("type") for s in distinct}
    if types == {"integer", "number"}:
        return {"type": "number"}
    if len(distinct) == 1:
        return distinct[0]
    if types == {"object"}:
        return distinct[0] | {"additionalProperties": True}
    nullable = any(s.get("nullable") and "type" not in s for s in distinct)
    typed = [s for s in distinct if "type" in s]
    if len({s["type"] for s in typed}) == 1:
        return typed[0] | {"nullable": True} if nullable else typed[0]
    return {"oneOf": typed, **({"nullable": True} if nullable else {})}
