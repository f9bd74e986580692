"""The layers of docs/architecture.md hold: import-linter's contract (pyproject.toml) passes.

The contract names whole packages, one per layer; a new top-level package of the project
must be given its layer, or nothing would check what it imports.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_import_contracts_are_kept():
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_top_level_package_has_its_layer():
    config = _config()
    (contract,) = config["contracts"]
    assert contract["type"] == "layers"
    tracked = subprocess.run(
        ["git", "ls-files", "*/__init__.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    packages = {Path(path).parts[0] for path in tracked if len(Path(path).parts) == 2} - {"tests"}
    # A layer may hold independent siblings: "executions | training".
    layered = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    assert layered == packages, "give each top-level package a layer (pyproject.toml)"
    assert set(config["root_packages"]) == packages
