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


def infer_schema(value: Any, *, top_level: bool = True, request: bool = True) -> dict:
    """The schema of `value`, with `value` as its example (at the top level).

    A request's objects say that fields beyond the example's reach the model unchanged;
    an answer's (`request=False`) don't: the model makes the answer, nothing is passed on.
    """
    schema = _infer(value, note=EXTRA_FIELDS_NOTE if request else None)
    if top_level:
        schema["example"] = value
    return schema


# Deeper than this the example still shows the value; its parts are left undescribed
# (uploads refuse deeper examples, but a model's answer is its own).
MAX_DESCRIBED_DEPTH = 32


def _infer(value: Any, depth: int = 0, *, note: str | None) -> dict:
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
        return {
            "type": "array",
            "items": _merge([_infer(item, depth + 1, note=note) for item in value], note),
        }
    if isinstance(value, dict):
        return _object(
            {str(key): _infer(item, depth + 1, note=note) for key, item in value.items()},
            list(map(str, value)),
            note,
        )
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _object(properties: dict, required: list[str], note: str | None) -> dict:
    schema = {"type": "object", "properties": properties}
    if required:  # OpenAPI 3.0 wants a non-empty list, or none
        schema["required"] = required
    schema["additionalProperties"] = True  # an answer, too, may carry fields its example lacked
    return schema | ({"description": note} if note else {})


def _is_null(schema: dict) -> bool:
    return "type" not in schema and schema.get("nullable") is True and "anyOf" not in schema


def _merge(schemas: list[dict], note: str | None) -> dict:
    """One schema for the items of an array that every item satisfies: objects merged key
    by key (required: the keys every object has), integers and numbers as numbers, other
    types side by side in `anyOf`, and null as `nullable` on each (OpenAPI 3.0 reads
    `nullable` only next to a `type`)."""
    members: list[dict] = []
    for schema in schemas:
        members.extend(schema.get("anyOf", [schema]))
    nullable = any(_is_null(s) or s.get("nullable") for s in members)
    typed = [s for s in members if "type" in s]
    undescribed = [s for s in members if s and "type" not in s and not _is_null(s)]
    if undescribed:  # an item nested too deeply: the items may be anything, as it says
        return undescribed[0]
    if not typed:
        return next((s for s in members if _is_null(s)), {})  # only nulls, or nothing known
    by_type: dict[str, list[dict]] = {}
    for schema in typed:
        by_type.setdefault(schema["type"], []).append(schema)
    if "integer" in by_type and "number" in by_type:
        by_type["number"] += by_type.pop("integer")
    merged = [_merge_one_type(kind, group, note) for kind, group in by_type.items()]
    if nullable:
        merged = [schema | {"nullable": True} for schema in merged]
    return merged[0] if len(merged) == 1 else {"anyOf": merged}


def _merge_one_type(kind: str, group: list[dict], note: str | None) -> dict:
    if kind == "object":
        properties: dict[str, list[dict]] = {}
        for schema in group:
            for key, item in schema["properties"].items():
                properties.setdefault(key, []).append(item)
        required = [key for key in properties if all(key in s.get("required", ()) for s in group)]
        return _object({key: _merge(items, note) for key, items in properties.items()}, required, note)
    if kind == "array":
        return {"type": "array", "items": _merge([s["items"] for s in group if s["items"]], note)}
    return {"type": kind}
