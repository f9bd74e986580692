"""The scoring script: it must parse and define the entrypoint the runner will call.

The script is parsed with `ast`, never imported or executed: it is untrusted code.
"""

from __future__ import annotations

import ast
import keyword

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .errors import UploadError


def check_entrypoint_name(entrypoint: str) -> None:
    """The entrypoint (`model_reference`) must be a plain Python function name."""
    if not entrypoint or not entrypoint.isidentifier() or keyword.iskeyword(entrypoint):
        raise UploadError(
            "model_reference",
            _(
                "%(name)s is not a valid Python function name; give the name of the function "
                "to call, e.g. score."
            )
            % {"name": repr(entrypoint)},
        )


# CPython 3.11 keeps the AST constructor's depth counter per interpreter, not per thread:
# another thread's parse during ours fails ours with this SystemError (python/cpython#106905,
# seen in the suite). A parse of its own, again, is the whole remedy.
_SHARED_DEPTH_COUNTER = "AST constructor recursion depth mismatch"


def _parse(text: str, filename: str, attempts: int = 3) -> ast.Module:
    for attempt in range(attempts):
        try:
            return ast.parse(text, filename=filename)
        except SystemError as exc:
            if _SHARED_DEPTH_COUNTER not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def check_source(
    text: str,
    entrypoint: str,
    *,
    field: str = "source",
    filename: str | None = None,
    parameters: tuple[str, ...] = ("data", "base_path"),
    also_accepts: tuple[str, ...] | None = None,
    reference_field: str = "model_reference",
) -> None:
    """Check that `text` parses and defines `def <entrypoint>(a, b)` at module level.

    The runner calls a scoring entrypoint with two positional arguments (sync: data and
    base_path; async: data_path and model_path), so the signature must accept exactly
    that. A training function may take `parameters` (df, base_path) or, the older
    contract, `also_accepts` (base_path). `filename` only makes the messages read better.
    """
    shown = f"def {entrypoint}({', '.join(parameters)}):"
    check_entrypoint_name(entrypoint)
    label = filename or gettext_lazy("The source file")
    # Python itself accepts a UTF-8 BOM at the start of a file, ast.parse on a str does not.
    text = text.removeprefix("\ufeff")
    try:
        tree = _parse(text, filename or "<source>")
    except SyntaxError as exc:
        raise UploadError(field, _does_not_parse(label, _describe_syntax_error(exc))) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        # ValueError: NUL bytes (Python 3.11); the others: absurdly nested code.
        raise UploadError(field, _does_not_parse(label, exc)) from None

    # Only direct statements of the module body count: a def inside `if`/`try` may or may
    # not exist at import time, and the message says so.
    found: ast.stmt | None = None
    top_level_functions: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            top_level_functions.append(node.name)
        if _binds_name(node, entrypoint):
            found = node  # the last binding wins, as at import time

    if found is None:
        # Translators: no functions (the list of function names is empty).
        available = ", ".join(dict.fromkeys(top_level_functions)) or _("none")
        raise UploadError(
            field,
            _(
                # Translators: %(reference_field)s is the name of the form field that holds the
                # function's name.
                "%(filename)s has no top-level function named %(name)s. Define it with "
                "`%(signature)s` directly in the module body (not inside an if, "
                "a class or another function), or set %(reference_field)s to the right name. "
                "Top-level functions found: %(functions)s."
            )
            % {
                "filename": label,
                "name": repr(entrypoint),
                "signature": shown,
                "reference_field": reference_field,
                "functions": available,
            },
        )
    if isinstance(found, ast.AsyncFunctionDef):
        raise UploadError(
            field,
            _(
                "%(name)s in %(filename)s is an `async def`; the platform calls it synchronously, "
                "so define it with a plain `def %(function)s(...)`."
            )
            % {"name": repr(entrypoint), "filename": label, "function": entrypoint},
        )
    if not isinstance(found, ast.FunctionDef):
        if isinstance(found, ast.ClassDef):
            message = _(
                "%(name)s in %(filename)s is a class (line %(line)s) rather than defined with def; "
                "define it with `%(signature)s` directly in the module body."
            )
        elif isinstance(found, ast.Import | ast.ImportFrom):
            message = _(
                "%(name)s in %(filename)s is imported (line %(line)s) rather than defined with def; "
                "define it with `%(signature)s` directly in the module body."
            )
        else:
            message = _(
                "%(name)s in %(filename)s is assigned (line %(line)s) rather than defined with def; "
                "define it with `%(signature)s` directly in the module body."
            )
        raise UploadError(
            field,
            message % {"name": repr(entrypoint), "filename": label, "line": found.lineno, "signature": shown},
        )
    problem = _positional_problem(found.args, len(parameters))
    if problem and also_accepts is not None and not _positional_problem(found.args, len(also_accepts)):
        problem = None
    if problem:
        counts = {2: _("two"), 1: _("one"), 3: _("three")}
        values = {
            "function": entrypoint,
            "filename": label,
            "line": found.lineno,
            "count": counts.get(len(parameters), len(parameters)),
            "signature": shown,
            "problem": problem,
        }
        if also_accepts is None:
            message = _(
                # Translators: %(count)s is a number ("two"); %(problem)s says what is wrong with the
                # function's parameters ("it requires 3").
                "%(function)s() in %(filename)s (line %(line)s) must accept exactly %(count)s positional "
                "arguments, e.g. `%(signature)s`, but %(problem)s."
            )
        else:
            values["alternative"] = f"def {entrypoint}({', '.join(also_accepts)}):"
            message = _(
                # Translators: %(count)s is a number ("two"); %(alternative)s is another accepted
                # signature; %(problem)s says what is wrong with the function's parameters.
                "%(function)s() in %(filename)s (line %(line)s) must accept exactly %(count)s positional "
                "arguments, e.g. `%(signature)s`, or `%(alternative)s`, but %(problem)s."
            )
        raise UploadError(field, message % values)


def _does_not_parse(filename: object, error: object) -> str:
    return _("%(filename)s does not parse as Python: %(error)s") % {"filename": filename, "error": error}


def _describe_syntax_error(exc: SyntaxError) -> str:
    described = str(exc.msg)
    if exc.lineno:
        # Translators: %(error)s is Python's own (English) description of a syntax error.
        described = _("%(error)s at line %(line)s") % {"error": exc.msg, "line": exc.lineno}
    offending = (exc.text or "").strip()
    return described + (f": {offending}" if offending else "")


def _binds_name(node: ast.stmt, name: str) -> bool:
    """True when a module-level statement binds `name` (def, class, assignment, import)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign | ast.AugAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name
    if isinstance(node, ast.Import | ast.ImportFrom):
        return any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names)
    return False


def _positional_problem(args: ast.arguments, count: int) -> str | None:
    """Why calling with `count` positional arguments would fail for this signature, or None."""
    positional = len(args.posonlyargs) + len(args.args)
    required = positional - len(args.defaults)
    if required > count:
        return _("it requires %(count)s") % {"count": required}
    if positional < count and args.vararg is None:
        return _("it takes only %(count)s") % {"count": positional}
    missing_kwonly = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if missing_kwonly:
        return _("it also requires the keyword-only argument(s) %(names)s") % {
            "names": ", ".join(missing_kwonly)
        }
    return None
