"""Pulse settings: everything comes from the environment (see .env.example)."""

import ipaddress
import sys
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("PULSE_DEBUG", default=True)

_DEV_SECRET_KEY = "pulse-development-only-secret-key-do-not-use-in-production-0123456789"
_DEV_ENCRYPTION_KEY = "cHVsc2UtZGV2ZWxvcG1lbnQtb25seS1mZXJuZXQta2U="


def _required_in_production(name: str, dev_default: str) -> str:
    """Read a secret; outside debug mode a missing value stops startup naming the variable."""
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(f"{name} must be set when PULSE_DEBUG is off.")


SECRET_KEY = _required_in_production("PULSE_SECRET_KEY", _DEV_SECRET_KEY)
# Fernet keys for credentials at rest; comma-separated, newest first, to rotate keys.
PULSE_ENCRYPTION_KEYS = [
    key.strip()
    for key in _required_in_production("PULSE_ENCRYPTION_KEY", _DEV_ENCRYPTION_KEY).split(",")
    if key.strip()
]

ALLOWED_HOSTS = env.list("PULSE_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("PULSE_CSRF_TRUSTED_ORIGINS", default=[])
PULSE_BASE_URL = env.str("PULSE_BASE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    # The admin without autodiscovery at start-up: pulse_project/urls.py discovers the admin modules, so a
    # process that serves no pages (runchecks) never imports them (forms, the SQL parser, the scheduler's admin).
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc as static files: /api/docs and /api/redoc work offline
    "django_filters",
    "connections",
    "monitors",
    "alerts",
    "observability",
    "monitors_as_code",
    "dashboard",
    "pulse_project",  # last: the top layer (runchecks, demo, rotate_secrets) may use every app
]
# A `runchecks` pass (--once, --table) claims, checks, records results and opens alerts: the apps that only serve
# pages and the API are left out of its app registry (about 14 % of its start-up CPU); no model of Pulse refers
# to theirs. The daemon (its jobs deliver notifications) and every other command and process load them all.
SERVING_ONLY_APPS = (
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
)
if sys.argv[1:2] == ["runchecks"] and any(arg.startswith(("--once", "--table")) for arg in sys.argv[2:]):
    INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in SERVING_ONLY_APPS]

MIDDLEWARE = [
    # First: a load balancer's probe of /api/health is answered whatever its Host header and scheme.
    "pulse_project.health.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's, the API docs') straight from the web process, compressed and cached.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "pulse_project.urls"
APPEND_SLASH = False

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
            ],
        },
    },
]

WSGI_APPLICATION = "pulse_project.wsgi.application"

DATABASES = {
    "default": env.db("PULSE_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/pulse"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("PULSE_DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
DATABASES["default"]["TEST"] = {"NAME": env.str("PULSE_TEST_DATABASE_NAME", default="test_pulse")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("PULSE_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The dashboard's login (Django's auth views at /accounts/); after it, the overview.
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
STATIC_ROOT = env.path("PULSE_STATIC_ROOT", default=BASE_DIR / "staticfiles")
# Without debug, `manage.py collectstatic` writes hashed, pre-compressed copies to STATIC_ROOT and
# WhiteNoise serves them with far-future cache headers; in debug, files come straight from the apps.
if DEBUG:  # static files come from the apps (finders); STATIC_ROOT exists only after collectstatic
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

EMAIL_CONFIG = env.email("PULSE_EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("PULSE_DEFAULT_FROM_EMAIL", default="pulse@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "common.pagination.CappedCountPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "common.api.exception_handler",
    # DRF's parsers plus Pulse's limits: no lone surrogates, nesting depth, finite bounded numbers, body size.
    "DEFAULT_PARSER_CLASSES": [
        "common.parsers.JSONBodyParser",
        "common.parsers.FormBodyParser",
        "common.parsers.MultiPartBodyParser",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Pulse API",
    "DESCRIPTION": "Data-health monitoring for PostgreSQL read replicas.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files; no online validator badge.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # /api/tables (with badge_url) and the rebaseline response share the table's status choices: one enum.
    "ENUM_NAME_OVERRIDES": {"MonitoredTableStatusEnum": "monitors.models.MonitoredTable.Status"},
}

PULSE_VERSION = "0.1.0"
# How long results are kept (days) and how stale the runchecks heartbeat may get (seconds).
PULSE_RESULT_RETENTION_DAYS = env.int("PULSE_RESULT_RETENTION_DAYS", default=90)
PULSE_HEARTBEAT_STALE_SECONDS = env.int("PULSE_HEARTBEAT_STALE_SECONDS", default=120)
# Volume: anomalous buckets in a row, explained by one new level, after which the level is accepted (0: never).
PULSE_LEVEL_SHIFT_CONFIRMATIONS = env.int("PULSE_LEVEL_SHIFT_CONFIRMATIONS", default=6)
if PULSE_LEVEL_SHIFT_CONFIRMATIONS == 1 or not 0 <= PULSE_LEVEL_SHIFT_CONFIRMATIONS <= 1000:
    raise ImproperlyConfigured(
        "PULSE_LEVEL_SHIFT_CONFIRMATIONS must be 0 (only rebaseline accepts a level shift) or 2 to 1000 "
        f"(anomalous buckets in a row), not {PULSE_LEVEL_SHIFT_CONFIRMATIONS}"
    )
# The bearer token Prometheus sends to GET /metrics; empty (the default): /metrics answers 404.
PULSE_METRICS_TOKEN = env.str("PULSE_METRICS_TOKEN", default="")
# runchecks: how long a batch's recording retries while Pulse's database is unreachable (seconds), and
# where batches go after that, to be recorded when the database is back (monitors/spool.py).
PULSE_RECORD_RETRY_SECONDS = env.float("PULSE_RECORD_RETRY_SECONDS", default=60.0)
# runchecks (the daemon) keeps a replica session open between batches for this long at most while unused
# (each in one of the connection's concurrency slots): a warm session spares the replica a backend start-up and
# its catalog caches. 0 keeps none.
_kept_idle = env.str("PULSE_KEPT_SESSION_IDLE_SECONDS", default="120")
try:
    PULSE_KEPT_SESSION_IDLE_SECONDS = float(_kept_idle)
except ValueError:
    PULSE_KEPT_SESSION_IDLE_SECONDS = float("nan")
if not 0 <= PULSE_KEPT_SESSION_IDLE_SECONDS <= 86_400:  # NaN and words fail this too
    raise ImproperlyConfigured(
        "PULSE_KEPT_SESSION_IDLE_SECONDS must be 0 (keep no replica session between batches) to 86400 seconds, "
        f"not {_kept_idle!r}"
    )
PULSE_SPOOL_DIR = env.path("PULSE_SPOOL_DIR", default=BASE_DIR / "var" / "spool")
# Webhook and Slack channels may only reach public addresses unless this is on (SSRF guard): a tenant
# could otherwise make Pulse POST to services on its own network and read their answers in the channel error.
PULSE_WEBHOOK_ALLOW_PRIVATE = env.bool("PULSE_WEBHOOK_ALLOW_PRIVATE", default=False)
# Customer connections never reach Pulse's own database server or a local socket. Loopback, link-local,
# unspecified and this machine's own addresses are refused too unless this is on (the demo and the tests).
PULSE_CONNECTION_ALLOW_LOCAL = env.bool("PULSE_CONNECTION_ALLOW_LOCAL", default=False)
# CIDR networks customer connections may reach (empty: any address the rules above allow).
PULSE_CONNECTION_ALLOWED_NETWORKS = [
    cidr.strip() for cidr in env.list("PULSE_CONNECTION_ALLOWED_NETWORKS", default=[]) if cidr.strip()
]
for _cidr in PULSE_CONNECTION_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"PULSE_CONNECTION_ALLOWED_NETWORKS: {_cidr!r} is not a CIDR network (e.g. 10.0.0.0/8)"
        ) from None

APSCHEDULER_DATETIME_FORMAT = "N j, Y, f:s a"
APSCHEDULER_RUN_NOW_TIMEOUT = 25

if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("PULSE_SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("PULSE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("PULSE_HSTS_PRELOAD", default=True)

# Behind a reverse proxy (nginx, a cloud load balancer) that terminates TLS: trust its X-Forwarded-Proto
# (HTTPS detection, secure cookies, no redirect loop) and X-Forwarded-Host (still checked against
# ALLOWED_HOSTS). On by default without debug; the proxy must overwrite both headers, never pass a client's.
PULSE_BEHIND_PROXY = env.bool("PULSE_BEHIND_PROXY", default=not DEBUG)
if PULSE_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("PULSE_LOG_LEVEL", default="INFO")},
    "loggers": {"apscheduler": {"level": "WARNING"}},
}
