"""docs/api.md's table of error codes lists exactly the codes the API answers with.

The codes are read from the source (every `error_body`/`error_json`/`error_response`
call, each `default_code`, the `*_CODES` tables, every `code=` given to an API
exception) plus the DRF exceptions that reach the API with their own codes; a new code
without its row in the table, or a row for a code nothing answers any more, fails.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from django.conf import settings
from rest_framework import exceptions

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["groups", "models_app", "executions", "training", "monitors", "monitoring", "portal"]
# Callables whose argument at this position is an API error code.
CODE_ARGUMENT = {"error_body": 1, "error_json": 1, "error_response": 2, "BadInput": 2, "ShareRefused": 2}
# DRF raises these itself (parsing, content negotiation, authentication): their codes reach clients.
DRF_RAISED = [
    exceptions.ParseError,
    exceptions.AuthenticationFailed,
    exceptions.NotAuthenticated,
    exceptions.PermissionDenied,
    exceptions.NotFound,
    exceptions.MethodNotAllowed,
    exceptions.NotAcceptable,
    exceptions.UnsupportedMediaType,
]


def _name(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def codes_in_source() -> dict[str, set[str]]:
    """{code: the files answering it}."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            where = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text())):
                codes: list[str | None] = []
                if isinstance(node, ast.Assign):
                    names = [target.id for target in node.targets if isinstance(target, ast.Name)]
                    if "default_code" in names:
                        codes.append(_string(node.value))
                    if any(name.endswith("_CODES") for name in names) and isinstance(node.value, ast.Dict):
                        codes.extend(_string(value) for value in node.value.values)
                elif isinstance(node, ast.Call):
                    name = _name(node)
                    position = CODE_ARGUMENT.get(name)
                    if position is not None and len(node.args) > position:
                        codes.append(_string(node.args[position]))
                    if name != "ValidationError":  # a form's error code, not an answer's
                        codes.extend(_string(kw.value) for kw in node.keywords if kw.arg == "code")
                for code in filter(None, codes):
                    found.setdefault(code, set()).add(where)
    return found


def documented_codes() -> set[str]:
    text = (ROOT / "docs" / "api.md").read_text()
    table = text[text.index("| status | code | meaning |") :].split("\n\n", 1)[0]
    codes = set()
    for row in table.splitlines()[2:]:
        cells = row.split("|")
        codes.update(re.findall(r"`([a-z_]+)`", cells[2]))
    return codes


def test_the_scan_sees_the_codes_it_should():
    found = codes_in_source()
    # One of each way a code is given, so the scan cannot silently miss a kind.
    assert "groups/api/views.py" in found["authentication_failed"]  # error_body(...)
    assert "executions/api.py" in found["not_finished"]  # default_code
    assert "executions/api.py" in found["files_removed"]  # NotFound(..., code=...)
    assert "models_app/serving/answers.py" in found["unavailable"]  # SERVING_ERROR_CODES
    assert "models_app/share_links.py" in found["revoked"]  # ShareRefused(...)
    assert "invalid_time_zone" not in found  # a form's ValidationError code is no answer's


def test_docs_api_lists_exactly_the_codes_the_api_answers_with():
    assert not settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_CLASSES")  # else `throttled` is an answer too
    answered = set(codes_in_source()) | {cls.default_code for cls in DRF_RAISED}
    documented = documented_codes()
    assert answered - documented == set(), "add these codes to docs/api.md's table (The error shape)"
    assert documented - answered == set(), "docs/api.md lists codes that nothing answers with any more"


def test_an_unknown_format_of_the_schema_names_each_format_once(db):
    from django.test import Client

    response = Client().get("/api/schema/?format=xml")
    assert response.status_code == 406
    # In the schema's own default rendering, YAML; the schema view has two renderers per format.
    assert "this endpoint answers yaml, json.'" in response.content.decode()
