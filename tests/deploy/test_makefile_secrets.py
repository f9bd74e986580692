"""`make run`: the admin password reaches `ensure_admin` and no other command."""

import re
import subprocess

from tests.helpers.processes import ROOT

# What runs a program of its own: each must start without the admin's secrets.
PROGRAMS = ("-m venv", "pip install", "apt-get", "manage.py", "supervisord")
SCRUBBED = "env -u NEOMARIL_ADMIN_PASSWORD -u NEOMARIL_ADMIN_USER -u DJANGO_SUPERUSER_PASSWORD"


def _commands_of_make_run() -> list[str]:
    # -n -B: print every command of every step, as on a machine where nothing is installed yet.
    printed = subprocess.run(
        ["make", "-n", "-B", "--no-print-directory", "run", "VENV=/nonexistent/venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [c.strip() for c in re.split(r"&&|\|\||;|\n|\{|\}", printed.replace("\\\n", " ")) if c.strip()]


def test_only_ensure_admin_is_given_the_admin_password():
    commands = _commands_of_make_run()
    runs = [c for c in commands if any(p in c for p in PROGRAMS)]
    assert any("ensure_admin" in c for c in runs) and any("pip install" in c for c in runs)
    for command in runs:
        if "ensure_admin" in command or re.search(r"\becho\b", command):  # a message naming a program
            continue
        assert SCRUBBED in command, command
