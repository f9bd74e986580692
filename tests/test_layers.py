"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml) pass.

`portal` is both the project shell and the accounts app, so the contracts name its
modules one by one: a new module of portal must be placed in one of the two lists.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["name"]: contract for contract in config["contracts"]}


def test_import_contracts_are_kept():
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_portal_module_has_its_layer():
    contracts = _contracts().values()
    shell = next(
        c for c in contracts if c.get("source_modules") == ["executions", "models_app", "monitoring"]
    )
    accounts = next(c for c in contracts if "portal.models" in c.get("source_modules", []))
    placed = set(shell["forbidden_modules"]) | set(accounts["source_modules"])
    tracked = subprocess.run(
        ["git", "ls-files", "portal"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    tops = {
        "portal." + Path(path).relative_to("portal").parts[0].removesuffix(".py")
        for path in tracked
        if path.endswith(".py") and not path.endswith(("__init__.py", "gunicorn.conf.py"))
    }
    assert tops - placed == set(), "place these portal modules in a layer (pyproject.toml)"
    assert placed - tops == set(), "these modules are gone: remove them from pyproject.toml"
