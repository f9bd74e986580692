"""Every message a page can show about bad input is marked for translation.

The upload checks, the forms and the services' refusals build their messages at the
moment they fail, in the request's language; one left as a plain (f-)string shows
English on a Portuguese page. This reads the code (ast) and names each such call. The
API modules are left out: the API answers in English whatever the request asks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ("models_app", "monitors", "training", "groups", "executions", "portal")
# Code that runs in the sandbox (no Django there), or never reaches a page.
NOT_PAGES = ("runtime", "search.py", "score.py", "migrations", "management")
API_MODULES = ("api.py", "serializers.py", "api_views.py")  # and an app's api/ package

# The exception or call -> the position of its message argument.
MESSAGE_ARGUMENT = {
    "UploadError": 1,
    "ValidationError": 0,
    "ActionRefused": 0,
    "PeopleError": 0,
    "NotValidated": 0,
    "NotPromotable": 0,
    "ConfigError": 0,
    "Unusable": 0,
    "InterpreterNotFound": 0,
    "ShareRefused": 1,
    "PeriodRefused": 0,
    "OutOfRange": 0,
    "add_error": 1,
}


def _modules() -> list[Path]:
    found = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT / app).parts
            if path.name in API_MODULES or parts[0] == "api" or any(part in NOT_PAGES for part in parts):
                continue
            found.append(path)
    return found


def _plain_text(node: ast.expr) -> bool:
    """A literal or f-string (or one formatted with % or +), not passed through gettext."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and any(c.isalpha() for c in node.value)
    if isinstance(node, ast.BinOp):
        return _plain_text(node.left)
    if isinstance(node, ast.List):
        return any(_plain_text(item) for item in node.elts)
    return False


def _untranslated(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = getattr(node.func, "attr", None) or getattr(node.func, "id", None) or ""
        for keyword in node.keywords:  # a form field's error_messages={...}
            if keyword.arg == "message" and called.endswith("Validator") and _plain_text(keyword.value):
                problems.append(f"line {node.lineno} {called}: {ast.unparse(keyword.value)[:80]}")
            if keyword.arg == "error_messages" and isinstance(keyword.value, ast.Dict):
                plain = [value for value in keyword.value.values if _plain_text(value)]
                problems += [
                    f"line {node.lineno} error_messages: {ast.unparse(value)[:80]}" for value in plain
                ]
        name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
        if name == "append" and getattr(node.func.value, "id", None) == "problems":
            position = 0  # monitors/forms.py gathers a configuration's problems in a list
        elif name in MESSAGE_ARGUMENT:
            position = MESSAGE_ARGUMENT[name]
        else:
            continue
        if len(node.args) > position and _plain_text(node.args[position]):
            problems.append(f"line {node.lineno} {name}: {ast.unparse(node.args[position])[:80]}")
    return problems


def test_the_scan_reads_the_modules_that_hold_the_messages():
    names = {str(path.relative_to(ROOT)) for path in _modules()}
    assert {
        "models_app/validation/requirements.py",
        "models_app/forms.py",
        "models_app/services.py",
        "monitors/forms.py",
        "training/forms.py",
        "groups/services.py",
    } <= names
    assert "models_app/runtime/runner.py" not in names and "monitors/api.py" not in names


@pytest.mark.parametrize(
    "source",
    [
        'raise UploadError(field, f"Line {n}: bad")',
        'raise forms.ValidationError("The configuration is not UTF-8 text.")',
        'self.add_error("schema", "Give the schema.")',
        'problems.append(f"{key} names {x} more than once.")',
        'raise ActionRefused("A %s model cannot be disabled." % status)',
        'forms.CharField(error_messages={"required": "Give the run a name."})',
        'RegexValidator(regex=r"^[a-z]+$", message=f"Group names must be {RULE}.")',
    ],
)
def test_a_plain_message_is_found(tmp_path, source):
    module = tmp_path / "module.py"
    module.write_text(f"def check():\n    {source}\n")
    assert len(_untranslated(module)) == 1


def test_a_translated_message_passes(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "def check():\n"
        '    raise UploadError(field, _("Line %(line)s: bad") % {"line": 1})\n'
        '    raise forms.ValidationError(_("x %(name)s"), params={"name": 1})\n'
        "    raise forms.ValidationError(exc.message)\n"
    )
    assert _untranslated(module) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_messages_are_marked_for_translation(path):
    assert _untranslated(path) == []
