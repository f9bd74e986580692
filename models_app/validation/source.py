"""The scoring script: it must parse and define the entrypoint the runner will call.

The script is parsed with `ast`, never imported or executed: it is untrusted code.
"""

from __future__ import annotations

import ast
import keyword

from .errors import UploadError


def check_entrypoint_name(entrypoint: str) -> None:
    """The entrypoint (`model_reference`) must be a plain Python function name."""
    if not entrypoint or not entrypoint.isidentifier() or keyword.iskeyword(entrypoint):
        raise UploadError(
            "model_reference",
            f"{entrypoint!r} is not a valid Python function name; give the name of the function "
            "to call, e.g. score.",
        )


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
    label = filename or "The source file"
    # Python itself accepts a UTF-8 BOM at the start of a file, ast.parse on a str does not.
    text = text.removeprefix("\ufeff")
    try:
        tree = ast.parse(text, filename=filename or "<source>")
    except SyntaxError as exc:
        raise UploadError(field, f"{label} does not parse as Python: {_describe_syntax_error(exc)}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        # ValueError: NUL bytes (Python 3.11); the others: absurdly nested code.
        raise UploadError(field, f"{label} does not parse as Python: {exc}") from None

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
        available = ", ".join(dict.fromkeys(top_level_functions)) or "none"
        raise UploadError(
            field,
            f"{label} has no top-level function named {entrypoint!r}. Define it with "
            f"`{shown}` directly in the module body (not inside an if, "
            f"a class or another function), or set {reference_field} to the right name. "
            f"Top-level functions found: {available}.",
        )
    if isinstance(found, ast.AsyncFunctionDef):
        raise UploadError(
            field,
            f"{entrypoint!r} in {label} is an `async def`; the platform calls it synchronously, "
            f"so define it with a plain `def {entrypoint}(...)`.",
        )
    if not isinstance(found, ast.FunctionDef):
        how = {ast.ClassDef: "a class", ast.Import: "imported", ast.ImportFrom: "imported"}.get(
            type(found), "assigned"
        )
        raise UploadError(
            field,
            f"{entrypoint!r} in {label} is {how} (line {found.lineno}) rather than defined with def; "
            f"define it with `{shown}` directly in the module body.",
        )
    problem = _positional_problem(found.args, len(parameters))
    if problem and also_accepts is not None and not _positional_problem(found.args, len(also_accepts)):
        problem = None
    if problem:
        counts = {2: "two", 1: "one", 3: "three"}
        wanted = (
            f"exactly {counts.get(len(parameters), len(parameters))} positional arguments, e.g. `{shown}`"
        )
        if also_accepts is not None:
            wanted += f", or `def {entrypoint}({', '.join(also_accepts)}):`"
        raise UploadError(
            field, f"{entrypoint}() in {label} (line {found.lineno}) must accept {wanted}, but {problem}."
        )


def _describe_syntax_error(exc: SyntaxError) -> str:
    where = f" at line {exc.lineno}" if exc.lineno else ""
    offending = (exc.text or "").strip()
    return f"{exc.msg}{where}" + (f": {offending}" if offending else "")


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
        return f"it requires {required}"
    if positional < count and args.vararg is None:
        return f"it takes only {positional}"
    missing_kwonly = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if missing_kwonly:
        return "it also requires the keyword-only argument(s) " + ", ".join(missing_kwonly)
    return None
