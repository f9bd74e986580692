# Neomaril: `make run` starts everything, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
NEOMARIL_DATA_DIR ?= $(CURDIR)/var
override NEOMARIL_DATA_DIR := $(abspath $(NEOMARIL_DATA_DIR))
# This node's own folder (sockets, runner logs, static files): the data folder unless
# several nodes share it (docs/deployment.md, "Production layout").
NEOMARIL_NODE_DIR ?= $(NEOMARIL_DATA_DIR)
override NEOMARIL_NODE_DIR := $(abspath $(NEOMARIL_NODE_DIR))
# supervisord's pid file and control socket, and gunicorn's (deploy/supervisord.conf,
# portal/gunicorn.conf.py); per node. A node folder too deep for a Unix socket's path
# (107 bytes) gets a short private folder in /tmp named after it, as its run folder does
# (portal/settings.py).
ifeq ($(origin NEOMARIL_SUPERVISOR_DIR),undefined)
NEOMARIL_SUPERVISOR_DIR := $(shell d='$(NEOMARIL_NODE_DIR)'; if [ $${#d} -le 80 ]; then echo "$$d"; \
	else echo "/tmp/neomaril-$$(printf %s "$$d" | sha256sum | cut -c1-12)-control"; fi)
endif
export NEOMARIL_DATA_DIR PORT NEOMARIL_NODE_DIR NEOMARIL_SUPERVISOR_DIR

# The admin password is for `ensure_admin` alone: every other step (the installs, pip
# building packages, apt-get) and supervisord with the long-running processes it starts
# get an environment without it. A prefix on each command, as make cannot unexport a
# variable for some targets only.
NO_ADMIN_SECRETS := env -u NEOMARIL_ADMIN_PASSWORD -u NEOMARIL_ADMIN_USER -u DJANGO_SUPERUSER_PASSWORD

.PHONY: install run test test-fast lint format messages bench browser-deps sandbox-deps gettext-deps clean

# The virtualenv is rebuilt when a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(NO_ADMIN_SECRETS) $(PYTHON) -m venv $(VENV)
	$(NO_ADMIN_SECRETS) $(PY) -m pip install --quiet --upgrade pip
	$(NO_ADMIN_SECRETS) $(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

run: install sandbox-deps
	$(NO_ADMIN_SECRETS) $(PY) manage.py migrate --noinput
	$(NO_ADMIN_SECRETS) $(PY) manage.py collectstatic --noinput --clear --verbosity 0
	$(PY) manage.py ensure_admin
	@echo
	@echo "  Neomaril is starting on http://127.0.0.1:$(PORT)/  (log in at /login/, API docs at /api/docs/)"
	@echo "  Data folder: $(NEOMARIL_DATA_DIR).  supervisord restarts a crashed process; Ctrl-C stops them all."
	@echo
	@case '$(NEOMARIL_SUPERVISOR_DIR)' in /tmp/neomaril-*-control) \
		mkdir -p -m 700 '$(NEOMARIL_SUPERVISOR_DIR)' && [ -O '$(NEOMARIL_SUPERVISOR_DIR)' ] && [ ! -L '$(NEOMARIL_SUPERVISOR_DIR)' ] \
		&& [ "$$(stat -c %a '$(NEOMARIL_SUPERVISOR_DIR)')" = 700 ] || { echo "$(NEOMARIL_SUPERVISOR_DIR) is not this user's private folder (mode 0700, not a link): remove it, or set NEOMARIL_SUPERVISOR_DIR"; exit 1; };; esac
	exec $(NO_ADMIN_SECRETS) NEOMARIL_VENV=$(abspath $(VENV)) $(VENV)/bin/supervisord --configuration deploy/supervisord.conf

# Uploaded code only ever runs under bubblewrap (docs/security.md); Debian's package.
# bubblewrap: the sandbox of model code; slirp4netns: the outbound path of a sandbox's
# private network (ip and nsenter, from iproute2 and util-linux, are on Debian already).
sandbox-deps:
	@{ command -v bwrap && command -v slirp4netns; } >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then \
			echo "Installing bubblewrap and slirp4netns from Debian's packages (the sandbox of model code)..."; \
			$(NO_ADMIN_SECRETS) apt-get update -qq && $(NO_ADMIN_SECRETS) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap slirp4netns >/dev/null; \
		else \
			echo "bubblewrap (bwrap) or slirp4netns is missing: install them (apt-get install bubblewrap slirp4netns); models cannot run without them."; \
		fi; }

# Browser tests drive Debian's Chromium (no browser downloads on these machines).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Chromium from Debian's packages for the browser tests..."; \
		$(NO_ADMIN_SECRETS) apt-get update -qq && $(NO_ADMIN_SECRETS) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The translation catalogs' tests and `make messages` run GNU gettext's xgettext and msgfmt.
gettext-deps:
	@command -v xgettext >/dev/null 2>&1 || { \
		echo "Installing gettext from Debian's packages for the translation catalogs..."; \
		$(NO_ADMIN_SECRETS) apt-get update -qq && $(NO_ADMIN_SECRETS) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext >/dev/null; }

# The backends the suite runs on, one pass each (docs/configuration.md, "Tests"): sqlite
# (the embedded default), postgres (PostgreSQL 15 + Redis from Debian's packages, started
# for the pass by tests/backends.py and stopped after) or both, one after the other (CI).
NEOMARIL_TEST_BACKENDS ?= sqlite
# The postgres pass adds these to pytest's arguments: the end-to-end tests one after
# another on one worker, the fast ones on the other (tests/serial_e2e.py): both passes fit
# CI's time.
NEOMARIL_TEST_POSTGRES_ARGS ?= -n 2 --e2e-serial
ON_BACKENDS = $(PY) -m tests.backends $(NEOMARIL_TEST_BACKENDS) --postgres-args='$(NEOMARIL_TEST_POSTGRES_ARGS)' --

test: install browser-deps sandbox-deps gettext-deps
	$(ON_BACKENDS) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install sandbox-deps gettext-deps
	$(ON_BACKENDS) $(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The pages' translations (docs/portal.md, "Language and time"): collect the marked strings
# into locale/pt_BR/LC_MESSAGES/*.po, then compile the .mo files that are committed with
# them. Needs GNU gettext (apt-get install gettext); the running portal does not.
MESSAGES_IGNORE := $(foreach d,.venv var sdk tests test-artifacts bench deploy static/vendor locale,--ignore=$(d))
messages: install gettext-deps
	$(PY) manage.py makemessages -l pt_BR --no-obsolete --no-location $(MESSAGES_IGNORE)
	$(PY) manage.py makemessages -d djangojs -l pt_BR --no-obsolete --no-location $(MESSAGES_IGNORE)
	$(PY) manage.py compilemessages --ignore=.venv --ignore=var --ignore=sdk

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

bench: install
	$(PY) bench/sync_bench.py
