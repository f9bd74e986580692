"""Neomaril settings: everything comes from environment variables (see docs/configuration.md)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from groups.envconf import (
    closed_folder,
    envbool,
    envchoice,
    envint,
    envlist,
    envnetworks,
    envpath,
    envstr,
    private_folder,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = closed_folder(envpath("NEOMARIL_DATA_DIR", BASE_DIR / "var"))
# This node's own state, never shared between nodes (docs/deployment.md, "Production
# layout"): sockets (RUN_DIR), runner logs, collected static files, and `make run`'s
# supervisord and gunicorn control sockets. The data folder by default (one node); each
# node of several sharing one data folder sets a local folder of its own.
NODE_DIR = closed_folder(envpath("NEOMARIL_NODE_DIR", DATA_DIR))


def _generated_secret(filename: str, make) -> str:
    """Read a secret kept in DATA_DIR, creating it (mode 0600) on first start.

    Lets `make run` work on a fresh machine; production passes the value through the
    environment instead, and the deploy checks warn when the file is in use.
    """
    path = DATA_DIR / filename
    if not path.exists():
        # Written whole under another name, then linked into place: several processes or
        # nodes starting at once on one data folder all read the first one's value, never
        # an empty file nor a key that another process replaced after reading it.
        draft = DATA_DIR / f".{filename}.{secrets.token_hex(8)}"
        draft.touch(mode=0o600)
        try:
            draft.write_text(make())
            with contextlib.suppress(FileExistsError):  # another one was first: theirs
                os.link(draft, path)
        finally:
            draft.unlink()
    return path.read_text().strip()


DEBUG = envbool("DEBUG", False)
SECRET_KEY = envstr("SECRET_KEY") or _generated_secret("secret_key", lambda: secrets.token_urlsafe(50))
SECRET_KEY_FROM_FILE = envstr("SECRET_KEY") is None
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
# Under /api/ a failed check answers the API's JSON, saying what to send instead.
CSRF_FAILURE_VIEW = "portal.ui.csrf_failure"
PORT = envint("PORT", 8000, minimum=1, maximum=65535)

# Fernet keys for secrets at rest; the first encrypts, all decrypt (rotation).
NEOMARIL_ENCRYPTION_KEYS = envlist("NEOMARIL_ENCRYPTION_KEY") or [
    _generated_secret("encryption.key", lambda: Fernet.generate_key().decode())
]
ENCRYPTION_KEY_FROM_FILE = not envlist("NEOMARIL_ENCRYPTION_KEY")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",  # login throttling, see "Login throttling" below
    "groups",  # label "portal": the accounts app kept its tables (groups/apps.py)
    "models_app",
    "executions",
    "training",
    "monitors",
    "monitoring",
    "portal",  # the project shell, label "shell": registers its system checks
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "portal.database_outage.DatabaseOutageMiddleware",  # outside all that read the database: 503, not 500
    # Refuses oversized API bodies (413 JSON) before anything reads them.
    "groups.api.middleware.ApiRequestSizeMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The page's language from the browser (or the switch's cookie); English for /api/.
    "portal.i18n.PortalLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check reads the body: Async inputs on the run URLs (and /try) stream
    # in under the executions' own upload limit.
    "executions.uploads.ExecutionUploadMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A NUL (%00) in the path is a 404, in the query string a 400, in the session cookie no
    # session (PostgreSQL cannot look one up: a 500). After the user's middleware, whose
    # lookup is lazy, so that the 404 page is the user's; before anything reads the session.
    "portal.nul_bytes.NulByteMiddleware",
    "portal.caching.PrivateByDefaultMiddleware",
    # Pages show times in the user's zone (their choice, else their browser's, else TIME_ZONE).
    "portal.i18n.UserTimezoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Scripts only from the portal's own files (and Swagger UI's start-up, by nonce).
    "portal.csp.ContentSecurityPolicyMiddleware",
    # A view that met a full disk answers 507 saying so (its exception, not a 500).
    "portal.out_of_space.OutOfSpaceMiddleware",
    # Last: turns a locked-out login form into the lock-out page (see "Login throttling").
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.platform_warnings",
            ],
        },
    },
]

# SQLite under the data folder by default; DATABASE_URL (e.g. postgres://...) at scale.
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = None  # opening SQLite + its PRAGMAs costs ~1 ms: keep connections
    # web, worker and model host write the same file: WAL lets readers run during a
    # write, IMMEDIATE takes the write lock up front instead of failing mid-transaction.
    # The WAL file keeps its largest size unless told: back to 64 MB after a checkpoint.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=67108864;",
    }
    # Tests use a file, not Django's in-memory default, so that concurrency tests get
    # real concurrent writers, as in production.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
else:
    # A PostgreSQL restart ends every kept connection: each is checked before its first use
    # in a request or task (one round trip, only for a connection kept from before).
    # Without it the first request of every web thread, and the first task of every
    # worker, failed after a restart while the database was already back.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A server that does not answer (a partition, a frozen host): a new connection gives
    # up after this many seconds, not when TCP does. A connection URL's own wins.
    database_options = DATABASES["default"].setdefault("OPTIONS", {})
    database_options.setdefault("connect_timeout", envint("DATABASE_CONNECT_TIMEOUT", 5, minimum=1))
    # A kept connection whose server goes away without a word (its host lost, a partition)
    # fails after about DATABASE_TCP_TIMEOUT seconds, not after the system's 2 h of TCP
    # keepalive silence: probes after 10 s idle (a query waiting for its result is idle to
    # TCP), and TCP_USER_TIMEOUT bounds both unanswered probes and unacknowledged data.
    # A healthy server's kernel answers the probes, so long queries are not affected.
    tcp_timeout = envint("DATABASE_TCP_TIMEOUT", 30, minimum=10)
    for keyword, value in (
        ("keepalives", 1),
        ("keepalives_idle", 10),
        ("keepalives_interval", 5),
        ("keepalives_count", 3),
        ("tcp_user_timeout", tcp_timeout * 1000),
    ):
        database_options.setdefault(keyword, value)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- Language and time ----------------------------------------------------------
# Pages speak the browser's language (Accept-Language) among LANGUAGES, or the one chosen
# with the switch in the top bar (a cookie); NEOMARIL_LANGUAGE when neither matches. The
# API always answers in English (portal/i18n.py). Catalogs: locale/<lang>/LC_MESSAGES.
LANGUAGES = [("en", "English"), ("pt-br", "Português (Brasil)")]
LANGUAGE_CODE = envchoice("NEOMARIL_LANGUAGE", "en", [code for code, _ in LANGUAGES])
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
# Stored times are UTC, and so are the server's computations (monitoring periods start at
# midnight UTC). Pages show times in the user's zone (groups.models.Profile, else the
# browser's); UTC is the fallback, and the zone of the API's answers.
TIME_ZONE = "UTC"
USE_TZ = True
# The browser's zone, set by static/js/common.js (Intl's resolvedOptions().timeZone).
BROWSER_TIME_ZONE_COOKIE = "neomaril_tz"

STATIC_URL = "static/"
# Per node: each node's `make run` collects them, and two collecting into one shared
# folder at once would overwrite each other's manifest and compressed copies.
STATIC_ROOT = NODE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns at start-up when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- HTTPS and cookies -------------------------------------------------------
# NEOMARIL_HTTPS=1 when the portal is served over TLS (directly or behind a proxy
# that sets X-Forwarded-Proto); `make run` serves plain HTTP on localhost.
HTTPS = envbool("NEOMARIL_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = envbool("NEOMARIL_SSL_REDIRECT", HTTPS)
# Load balancers probe and Prometheus scrapes each node over HTTP (a redirect would
# send the scrape to the balancer, i.e. any node).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
if envbool("NEOMARIL_BEHIND_PROXY", HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = envint("NEOMARIL_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("NEOMARIL_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = envbool("NEOMARIL_HSTS_PRELOAD", False)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- REST API ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "groups.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "groups.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "groups.api.errors.exception_handler",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "groups.api.negotiation.ContentNegotiation",
    # DRF's parsers, with deep JSON nesting answered 400 instead of a RecursionError 500,
    # and a key or field sent twice refused rather than the last one kept.
    "DEFAULT_PARSER_CLASSES": [
        "groups.api.parsers.JSONParser",
        "groups.api.parsers.FormParser",
        "groups.api.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Neomaril API",
    "DESCRIPTION": "Deploy trained Python models as production services.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The run URL and /healthz are plain Django views: portal.api_schema describes them;
    # then every operation gets the standard error answers (after the run URL's own).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "portal.api_schema.document_run_and_health",
        "portal.api_schema.document_error_answers",
        "portal.api_schema.declare_closed_request_bodies",
        "portal.api_schema.nullable_references_as_one_of",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ModelStatusEnum": "models_app.models.MLModel.Status",
        "BuildStatusEnum": "models_app.models.ModelBuild.Status",
        "ExecutionStatusEnum": "executions.models.Execution.Status",
    },
}

# --- Login throttling (django-axes) --------------------------------------------
# Failed logins are counted in the database, so every web process and node shares one
# count; it applies to the API login, the portal's /login/ and /admin/login/. After
# LOGIN_FAILURE_LIMIT failures from one client address, logins from it are refused
# (even with the right password) for LOGIN_LOCKOUT_MINUTES; further tries during the
# lock-out neither count nor extend it. A success does not reset the count: an attacker
# with one account could otherwise interleave good logins with guesses.
AUTHENTICATION_BACKENDS = [
    "groups.authentication.LoginThrottleBackend",  # refuses locked-out clients first
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_LIMIT = envint("NEOMARIL_LOGIN_FAILURE_LIMIT", 10, minimum=1)
LOGIN_LOCKOUT_MINUTES = envint("NEOMARIL_LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
# Reverse proxies (addresses or networks) whose X-Forwarded-For is believed. From any
# other peer the header is ignored: a client could name any address in it.
TRUSTED_PROXIES = envnetworks("NEOMARIL_TRUSTED_PROXIES")
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = LOGIN_LOCKOUT_MINUTES / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = False
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True  # failures are what we count; no row per successful login
AXES_CLIENT_IP_CALLABLE = "groups.authentication.client_ip"
AXES_LOCKOUT_CALLABLE = "groups.authentication.lockout_response"

# --- Tokens -----------------------------------------------------------------
GROUP_TOKEN_LIFETIME_DAYS = envint("NEOMARIL_GROUP_TOKEN_DAYS", 365, minimum=1)
# A token a login issued (every SDK client made with a password) is revoked once unused this long.
LOGIN_TOKEN_IDLE_DAYS = envint("NEOMARIL_LOGIN_TOKEN_IDLE_DAYS", 30, minimum=1)
# Last-use stamps on API tokens are written at most this often, to keep writes off
# the hot path of every authenticated request.
API_TOKEN_LAST_USED_RESOLUTION_SECONDS = 60

# --- People: set-password links and e-mail -----------------------------------------
# A new or reset account gets a one-time link (Django's password-reset token) valid
# this long; it stops working as soon as it is used.
PASSWORD_RESET_TIMEOUT = envint("NEOMARIL_SET_PASSWORD_LINK_HOURS", 72, minimum=1) * 3600
# Links are e-mailed only when an admin asks; without NEOMARIL_EMAIL_HOST the "e-mail"
# is printed on the web process's output (Django's console backend), never sent.
EMAIL_HOST = envstr("NEOMARIL_EMAIL_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = envint("NEOMARIL_EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = envstr("NEOMARIL_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = envstr("NEOMARIL_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = envbool("NEOMARIL_EMAIL_TLS", True)
DEFAULT_FROM_EMAIL = envstr("NEOMARIL_EMAIL_FROM", "neomaril@localhost")

# --- Task queue (django-q2) --------------------------------------------------
REDIS_URL = envstr("REDIS_URL")
Q_CLUSTER = {
    "name": "neomaril",
    # Workers mostly wait on child processes (uv, runners), so more than the cores.
    "workers": envint("NEOMARIL_WORKERS", 4, minimum=2),
    # The longest task (an environment build) must finish within `timeout`; `retry`
    # must be larger or django-q2 hands a running task to a second worker.
    "timeout": envint("NEOMARIL_TASK_TIMEOUT", 1800, minimum=10),
    "retry": envint("NEOMARIL_TASK_RETRY", 1900, minimum=11),
    # Our tasks record their own failures on their status rows; never re-run them blindly.
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Tasks",
    # A cluster takes tasks ahead of its workers into its own queue (django-q2's default:
    # workers², 16). Redis hands a task out once, so each one held there waits behind
    # this node's busy workers while another node's are idle, and is lost with the node if
    # it stops. One (plus the one its pusher then holds) is enough: our tasks run seconds
    # to minutes, so the time to fetch the next one is nothing beside them.
    "queue_limit": 1,
}
# While other groups' jobs wait for a worker, one group's builds, training runs and
# monitoring run at most this many at once (its executions count, under their own slots):
# 0 = half of a node's workers; while none waits, all workers but one (groups.jobs,
# "a group's share of the workers").
WORKER_JOBS_PER_GROUP = envint("NEOMARIL_WORKER_JOBS_PER_GROUP", 0, minimum=0)
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["broker_class"] = "groups.broker.QuickPollORM"
    # How often the idle cluster asks the database for a queued task: at most the wait
    # between an upload and its build's start (it was 0.5 s). An idle poll is one plain
    # statement (groups.broker): the idle pusher uses about 0.5 % of a core.
    Q_CLUSTER["poll"] = envint("NEOMARIL_QUEUE_POLL_MS", 100, minimum=10, maximum=5000) / 1000

# --- Model runtime --------------------------------------------------------------
MODELS_DIR = DATA_DIR / "models"
ENVS_DIR = DATA_DIR / "envs"
UV_CACHE_DIR = envstr("NEOMARIL_UV_CACHE_DIR")
ENV_BUILD_TIMEOUT = envint("NEOMARIL_ENV_BUILD_TIMEOUT", 900, minimum=10)
SMOKE_TEST_TIMEOUT = envint("NEOMARIL_SMOKE_TEST_TIMEOUT", 120, minimum=1)
# Lines such as `--index-url` or `--extra-index-url` in requirements.txt redirect the
# install to another package index; only an admin may turn that on.
ALLOW_REQUIREMENT_OPTIONS = envbool("NEOMARIL_ALLOW_REQUIREMENT_OPTIONS", False)
# Off: environments get prebuilt wheels only. A source package runs its build script in
# the worker, outside the sandbox, so only an admin may turn that on.
ALLOW_SOURCE_BUILDS = envbool("NEOMARIL_ALLOW_SOURCE_BUILDS", False)
# Extra folders searched for Python interpreters (besides PATH, pyenv and uv).
PYTHON_SEARCH_PATHS = envlist("NEOMARIL_PYTHON_SEARCH_PATHS", [])
MAX_UPLOAD_FILE_BYTES = envint("NEOMARIL_MAX_UPLOAD_FILE_MB", 1024, minimum=1) * 1024 * 1024
MAX_UPLOAD_TOTAL_BYTES = envint("NEOMARIL_MAX_UPLOAD_TOTAL_MB", 2048, minimum=1) * 1024 * 1024
# Text files (source, requirements, schema, .env) are parsed in memory, so they get a
# much smaller cap than the model file.
MAX_TEXT_FILE_BYTES = envint("NEOMARIL_MAX_TEXT_FILE_KB", 1024, minimum=1) * 1024
FILE_UPLOAD_HANDLERS = ["groups.uploads.LimitedTemporaryFileUploadHandler"]
# Free space kept on the data folder's disk for the database, logs and jobs' records: an
# upload that would leave less is refused (507, portal.out_of_space answers a full disk so),
# a job that leaves less is stopped (models_app.runtime.oneshot).
DISK_RESERVE_MB = envint("NEOMARIL_DISK_RESERVE_MB", 256, minimum=0)
# What one group's files may take on the data disk, in MB, unless an admin set the group's
# own quota; 0: no limit (groups.storage).
GROUP_STORAGE_MB = envint("NEOMARIL_GROUP_STORAGE_MB", 0, minimum=0)
UPLOAD_TMP_DIR = DATA_DIR / "tmp"
UPLOAD_TMP_DIR.mkdir(exist_ok=True)
FILE_UPLOAD_TEMP_DIR = str(UPLOAD_TMP_DIR)
# Store uploads readable by the owner only.
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700

# --- Sync serving (model host) ------------------------------------------------------
# Unix sockets of the runners and of the host. Socket paths are limited to 107 bytes
# and a runner's socket name takes up to ~58 (".M<32 hex>.<build>.<replica>.sock.loading"),
# so a deep node folder falls back to a short folder under /tmp. A folder set explicitly
# is never replaced: one too long stops the start, saying so.
MAX_RUN_DIR_CHARS = 48
RUN_DIR = envpath("NEOMARIL_RUN_DIR", NODE_DIR / "run")
if envstr("NEOMARIL_RUN_DIR") and len(str(RUN_DIR)) > MAX_RUN_DIR_CHARS:
    raise ImproperlyConfigured(
        f"NEOMARIL_RUN_DIR={str(RUN_DIR)!r} is {len(str(RUN_DIR))} characters long: the sockets in it "
        f"need a folder of at most {MAX_RUN_DIR_CHARS} (Unix socket paths are limited to 107 bytes). "
        "Choose a shorter path, or unset it to use <node folder>/run (or a short folder in /tmp)."
    )
if len(str(RUN_DIR)) > MAX_RUN_DIR_CHARS:
    import hashlib
    import tempfile

    RUN_DIR = private_folder(
        Path(tempfile.gettempdir()) / f"neomaril-{hashlib.sha256(str(NODE_DIR).encode()).hexdigest()[:12]}",
        "the run folder of a node folder too deep for sockets",
    )
# Threads per web worker for Django's requests (pages, API, uploads, downloads); Sync
# model calls don't use them (they are answered on the worker's event loop).
WEB_THREADS = envint("NEOMARIL_WEB_THREADS", 8, minimum=1)
# Seconds a request body up to 1 MiB has to arrive whole (else 408), and the longest pause
# in a larger one (portal.wsgi_bridge): a slow sender must not hold one of those threads.
REQUEST_BODY_TIMEOUT = envint("NEOMARIL_REQUEST_BODY_TIMEOUT", 60, minimum=1)
# Behind a load balancer: seconds a stopping web goes on serving while /healthz answers
# 503, so the balancer takes the node out first (portal.workers.DrainingServer); below
# gunicorn's graceful_timeout (30 s), which then ends the stop.
WEB_DRAIN_SECONDS = envint("NEOMARIL_WEB_DRAIN_SECONDS", 0, minimum=0, maximum=20)
PREDICT_TIMEOUT = envint("NEOMARIL_PREDICT_TIMEOUT", 30, minimum=1)
# The largest answer a Sync model may give: the web process holds each answer whole while
# it arrives, and every group's calls share it (large results belong to Async models).
SYNC_MAX_ANSWER_BYTES = envint("NEOMARIL_SYNC_MAX_ANSWER_MB", 16, minimum=1) * 1024 * 1024
COLD_START_TIMEOUT = envint("NEOMARIL_COLD_START_TIMEOUT", 120, minimum=1)
# A Sync build asks this node's model host to start its runners (the smoke test runs in
# them) before it announces Deployed; 0 = smoke test alone, runners start on the first call.
WARM_ON_DEPLOY = envbool("NEOMARIL_WARM_ON_DEPLOY", True)
HOST_MAX_RUNNERS = envint("NEOMARIL_HOST_MAX_RUNNERS", 16, minimum=1)
# Runners a group's Sync models keep warm on each node beyond one per model (the sum of
# their min_replicas - 1): a model's cold start evicts other models' idle runners to make
# room for its minimum, so without a share one group could hold every runner of a node.
GROUP_WARM_REPLICAS = envint("NEOMARIL_GROUP_WARM_REPLICAS", max(1, HOST_MAX_RUNNERS // 4), minimum=0)
# Replicas follow the load (docs/serving.md): a model's runners grow from its
# min_replicas towards its max_replicas, whose default is this node's cores, while they
# are busy, and shrink back after this many seconds of light load.
HOST_CORES = len(os.sched_getaffinity(0))
REPLICA_IDLE_SECONDS = envint("NEOMARIL_REPLICA_IDLE_SECONDS", 30, minimum=1)
# Total resident memory of all runners on the node; 0 = no memory budget.
HOST_MEMORY_BUDGET_MB = envint("NEOMARIL_HOST_MEMORY_BUDGET_MB", 0, minimum=0)
# Address-space limit of one runner (RLIMIT_AS); 0 = none. Generous: numpy and BLAS
# reserve much more virtual memory than they use.
RUNNER_MEMORY_LIMIT_MB = envint("NEOMARIL_RUNNER_MEMORY_LIMIT_MB", 8192, minimum=0)
# What the runners of a model print goes to one log per model and node; past this size
# the model host moves it to <hash>.log.1 (replacing the one before) and starts it again.
# Far below a runner's file-size limit (NEOMARIL_SANDBOX_TMP_MB, checked: portal.checks),
# at which every print() of the model would fail.
RUNNER_LOG_MAX_MB = envint("NEOMARIL_RUNNER_LOG_MAX_MB", 64, minimum=1)
# Sync calls are recorded for monitoring, in batches, off the request path.
RECORD_PREDICTIONS = envbool("NEOMARIL_RECORD_PREDICTIONS", True)
RECORD_BUFFER_SIZE = envint("NEOMARIL_RECORD_BUFFER", 10_000, minimum=1)
# The same buffer in bytes (inputs and answers), and the largest call recorded at all.
RECORD_BUFFER_BYTES = envint("NEOMARIL_RECORD_BUFFER_MB", 64, minimum=1) * 1024 * 1024
RECORD_MAX_CALL_BYTES = envint("NEOMARIL_RECORD_MAX_KB", 1024, minimum=1) * 1024
RECORD_RETENTION_DAYS = envint("NEOMARIL_RECORD_RETENTION_DAYS", 90, minimum=1)

# --- Metrics: GET /metrics (portal/metrics.py, docs/observability.md) ------------------
# Answered with `Authorization: Bearer <NEOMARIL_METRICS_TOKEN>` when it is set, or to a
# client in these networks (the peer's address; X-Forwarded-For only through
# NEOMARIL_TRUSTED_PROXIES). `none`: the token only.
METRICS_TOKEN = envstr("NEOMARIL_METRICS_TOKEN")
if METRICS_TOKEN is not None and not all("!" <= c <= "~" for c in METRICS_TOKEN):
    # Sent in a header, it could never match: the node would start with /metrics closed.
    raise ImproperlyConfigured(
        "NEOMARIL_METRICS_TOKEN must be printable ASCII without spaces: it is sent as "
        "'Authorization: Bearer <token>'."
    )
METRICS_ALLOWED_NETWORKS = envnetworks("NEOMARIL_METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1"])

# --- Sandbox of user code (models_app/runtime/sandbox.py, docs/security.md) ----------
# Every process that runs uploaded code starts under bubblewrap. Turning it off is for a
# single-user machine only: `check --deploy` fails and admins see a banner.
UNSAFE_NO_SANDBOX = envbool("NEOMARIL_UNSAFE_NO_SANDBOX", False)
# When the platform runs as root, each sandbox runs as its own uid from this range
# (no passwd entry needed), so process limits of one job never count another's.
SANDBOX_UID_BASE = envint("NEOMARIL_SANDBOX_UID_BASE", 200_000, minimum=1000)
SANDBOX_UID_COUNT = envint("NEOMARIL_SANDBOX_UID_COUNT", 1000, minimum=1)
# A model allowed the network gets a network namespace of its own, reaching out through
# slirp4netns (user-mode NAT): it can't listen on the node's ports, nor see its sockets.
# "host" shares the node's network instead (the behaviour before; docs/security.md).
SANDBOX_NETWORK = envchoice("NEOMARIL_SANDBOX_NETWORK", "private", ["private", "host"])
# Private network: the node's own loopback services (the web port, /metrics, PostgreSQL,
# Redis) stay out of reach unless this is on; then the model finds them at 10.0.2.2.
SANDBOX_HOST_LOOPBACK = envbool("NEOMARIL_SANDBOX_HOST_LOOPBACK", False)
# Private network: destinations refused inside the sandbox (an unreachable route): the
# clouds' metadata services (link-local 169.254.169.254; Azure's WireServer, which lets only
# root through and now sees slirp4netns's root connections; Alibaba's).
SANDBOX_BLOCKED_NETWORKS = envnetworks(
    "NEOMARIL_SANDBOX_BLOCKED_NETWORKS", ["169.254.0.0/16", "168.63.129.16/32", "100.100.100.200/32"]
)
# Limits of every kind of job; 0 = none. Memory is per process (RLIMIT_AS), processes
# counts threads too, disk is what the job may write (its folder, its private /tmp).
SANDBOX_PROCESSES = envint("NEOMARIL_SANDBOX_PROCESSES", 256, minimum=0)
SANDBOX_TMP_MB = envint("NEOMARIL_SANDBOX_TMP_MB", 512, minimum=1)
BUILD_MEMORY_LIMIT_MB = envint("NEOMARIL_BUILD_MEMORY_LIMIT_MB", 8192, minimum=0)
BUILD_CPU_SECONDS = envint("NEOMARIL_BUILD_CPU_SECONDS", 600, minimum=0)
EXECUTION_MEMORY_LIMIT_MB = envint("NEOMARIL_EXECUTION_MEMORY_LIMIT_MB", 8192, minimum=0)
EXECUTION_DISK_MB = envint("NEOMARIL_EXECUTION_DISK_MB", 10_240, minimum=1)

# --- Async executions (executions app) ----------------------------------------
EXECUTIONS_DIR = DATA_DIR / "executions"
EXECUTION_TIMEOUT = envint("NEOMARIL_EXECUTION_TIMEOUT", 1200, minimum=1)
MAX_EXECUTION_UPLOAD_BYTES = envint("NEOMARIL_MAX_EXECUTION_UPLOAD_MB", 2048, minimum=1) * 1024 * 1024
EXECUTION_CONCURRENCY_PER_MODEL = envint("NEOMARIL_EXECUTION_CONCURRENCY_PER_MODEL", 2, minimum=1)
# Below the worker count, so a flood of executions never holds every worker and builds still run.
EXECUTION_CONCURRENCY_TOTAL = envint("NEOMARIL_EXECUTION_CONCURRENCY_TOTAL", 3, minimum=1)
# The slots one group's executions may hold at once; 0: all but one (at least one), so
# another group's execution never waits for one of this group's to end (executions.md).
EXECUTION_CONCURRENCY_PER_GROUP = envint("NEOMARIL_EXECUTION_CONCURRENCY_PER_GROUP", 0, minimum=0)
EXECUTION_RETENTION_DAYS = envint("NEOMARIL_EXECUTION_RETENTION_DAYS", 30, minimum=7)
# A Running execution whose worker has not written a heartbeat (every 5 s) for this long
# lost its worker: housekeeping re-queues it once, then fails it (docs/executions.md).
EXECUTION_STALE_SECONDS = envint("NEOMARIL_EXECUTION_STALE_SECONDS", 90, minimum=15)

# --- Training runs (training app, docs/training.md) -------------------------------
TRAININGS_DIR = DATA_DIR / "trainings"
# Seconds the user's training function may run (the environment build has its own
# NEOMARIL_ENV_BUILD_TIMEOUT); both together stay below django-q2's task timeout.
TRAINING_TIMEOUT = envint("NEOMARIL_TRAINING_TIMEOUT", 800, minimum=1)
TRAINING_MEMORY_LIMIT_MB = envint("NEOMARIL_TRAINING_MEMORY_LIMIT_MB", 16_384, minimum=0)
TRAINING_DISK_MB = envint("NEOMARIL_TRAINING_DISK_MB", 10_240, minimum=1)
TRAINING_STALE_SECONDS = envint("NEOMARIL_TRAINING_STALE_SECONDS", 90, minimum=15)
# The interpreter of the platform's AutoML environment (training/automl/requirements.txt).
AUTOML_PYTHON = envstr("NEOMARIL_AUTOML_PYTHON", "3.11")

# --- Indirect monitoring (monitors app, docs/monitoring.md) -------------------------
MONITORS_DIR = DATA_DIR / "monitors"
# Seconds one sandboxed preprocess process may take: a validation, or one batch of a period.
MONITORING_TIMEOUT = envint("NEOMARIL_MONITORING_TIMEOUT", 600, minimum=1)
MONITORING_MEMORY_LIMIT_MB = envint("NEOMARIL_MONITORING_MEMORY_LIMIT_MB", 8192, minimum=0)
MONITORING_DISK_MB = envint("NEOMARIL_MONITORING_DISK_MB", 2048, minimum=1)
# Recorded calls (or executions) handed to one preprocess process; bounds its memory.
MONITORING_BATCH_SIZE = envint("NEOMARIL_MONITORING_BATCH_SIZE", 10_000, minimum=1)
# A period with fewer feature rows than this is "insufficient" (a default per model).
MONITORING_MINIMUM_ROWS = envint("NEOMARIL_MONITORING_MINIMUM_ROWS", 100, minimum=1)
MONITORING_STALE_SECONDS = envint("NEOMARIL_MONITORING_STALE_SECONDS", 90, minimum=15)
MONITORING_WEBHOOK_TIMEOUT = envint("NEOMARIL_MONITORING_WEBHOOK_TIMEOUT", 10, minimum=1)
# Webhooks reach public addresses only, plus these networks (groups/webhooks.py).
WEBHOOK_ALLOWED_NETWORKS = envnetworks("NEOMARIL_WEBHOOK_ALLOWED_NETWORKS")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {
        "run_call_client_errors": {"()": "portal.logs.RunCallClientErrors"},
        "one_line": {"()": "portal.logs.OneLine"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": envchoice("NEOMARIL_LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
    },
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Refused run calls are counted in /metrics; bad Host headers are the client's.
        "django.request": {"filters": ["run_call_client_errors"]},
        "django.security.DisallowedHost": {"filters": ["one_line"]},
    },
}
