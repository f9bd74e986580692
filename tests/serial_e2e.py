"""Pytest plugin: under pytest-xdist, the end-to-end tests run one after another.

`pytest -n 2 --e2e-serial`: all end-to-end tests (marked slow or browser) form one unit of
work, so one worker runs them in order while the other workers share the fast tests
(grouped by module, as xdist's loadscope does). End-to-end tests start `make run` (a
dozen processes), real uv builds and Chromium, and time their answers: two at once on a
small machine compete for it. This is how the suite's PostgreSQL pass fits beside the
SQLite one in CI's time (docs/configuration.md, "Tests").

xdist's own way, `xdist_group` marks with `--dist loadgroup`, does nothing with pytest
9.2: it renames test ids to carry the group, which pytest no longer lets it do
(pytest-dev/pytest-xdist#1386). The scheduler runs in the controller, which sees test ids
only, not marks, so each worker writes its end-to-end test ids to a folder the
controller names in the environment before it starts them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

IDS_FOLDER = "NEOMARIL_E2E_IDS_DIR"
END_TO_END_MARKS = ("slow", "browser")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--e2e-serial",
        action="store_true",
        help="with -n: the end-to-end tests (slow, browser) run one after another on one worker",
    )


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("e2e_serial") and not _is_worker(config):
        os.environ[IDS_FOLDER] = tempfile.mkdtemp(prefix="neomaril-e2e-ids-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.getoption("e2e_serial") and not _is_worker(config) and IDS_FOLDER in os.environ:
        shutil.rmtree(os.environ.pop(IDS_FOLDER), ignore_errors=True)


@pytest.hookimpl(trylast=True)  # after anything else that reorders or deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    folder = os.environ.get(IDS_FOLDER)
    if folder and _is_worker(config):
        ids = [item.nodeid for item in items if any(item.get_closest_marker(m) for m in END_TO_END_MARKS)]
        Path(folder, f"{config.workerinput['workerid']}.txt").write_text("\n".join(ids))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getoption("e2e_serial"):
        return EndToEndInOneUnit(config, log)
    return None  # xdist's own


class EndToEndInOneUnit(LoadScopeScheduling):
    """loadscope, with every end-to-end test in one scope."""

    def __init__(self, config: pytest.Config, log=None) -> None:
        super().__init__(config, log)
        self._end_to_end: set[str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._end_to_end is None:  # first called once every worker has collected
            files = Path(os.environ[IDS_FOLDER]).glob("*.txt")
            self._end_to_end = {line for f in files for line in f.read_text().splitlines()}
        return "end-to-end" if nodeid in self._end_to_end else super()._split_scope(nodeid)
