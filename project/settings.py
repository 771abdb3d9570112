"""Django settings, read from the environment, safe unless told otherwise.

Every value that differs between a laptop, CI and production comes from an
environment variable. The defaults are production's: DEBUG off, a
SECRET_KEY required, only local host names allowed; the Makefile turns DEBUG
on for local development. PostgreSQL and Redis default to their standard
local ports. The production environment is documented in README.md
("Deploying") and `.env.example`.
"""

import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, unquote

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean the way shells and compose files write them."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


# Where a URL's query starts: a `?` and a parameter name with its `=`.
QUERY_START = re.compile(r"\?[A-Za-z_][A-Za-z0-9_.-]*=")


def url_with_quoted_password(url: str) -> str:
    """The URL with its user and password percent-encoded.

    Passwords are pasted into URLs as they are (compose builds `REDIS_URL`
    from `REDIS_PASSWORD`); an unencoded `#`, `/`, `?` or `@` in one would be
    read as the URL's fragment, path, query or host, and the clients then fail
    with part of the password in their message. The rule: the query starts at
    the first `?name=` (`?sslmode=`), and the credentials end at the last `@`
    before it, so a query may hold `@` (`sslrootcert=/ca@2024.pem`) and a
    password anything but `?name=` followed by an `@` later on (encode that
    one). Encoding is idempotent: an encoded password stays as it is, and a
    literal `%` must be written `%25`.
    """
    scheme, sep, rest = url.partition("://")
    query = QUERY_START.search(rest)
    start = query.start() if query else len(rest)
    credentials, at, location = rest[:start].rpartition("@")
    if not sep or not at:
        return url
    user, colon, password = credentials.partition(":")
    quoted = quote(unquote(user), safe="") + colon + quote(unquote(password), safe="")
    return f"{scheme}://{quoted}@{location}{rest[start:]}"


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        sys.exit(
            "SECRET_KEY is not set: set it in the environment (50 or more random characters), "
            "or set DEBUG=true on a development machine"
        )
    SECRET_KEY = "insecure-development-only-key-never-used-with-debug-off"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Served over TLS (here or at a proxy): cookies only over HTTPS, HTTP
# redirected (but the health checks and /metrics, which load balancers,
# compose and Prometheus call over plain HTTP inside the network), and HSTS.
HTTPS = env_bool("HTTPS", False)
# `X-Forwarded-Proto: https` is believed only when the operator says a proxy
# sets it and nothing else can reach gunicorn: any client could send it.
TRUST_X_FORWARDED_PROTO = env_bool("TRUST_X_FORWARDED_PROTO", False)
if TRUST_X_FORWARDED_PROTO:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading binds the whole domain to HTTPS in browsers for good: the
    # operator's decision, not a default (check --deploy's W021 says so).
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if env_bool("SECURE_HSTS_PRELOAD", False) else ["security.W021"]
SESSION_COOKIE_AGE = 8 * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Error pages and reports never show a setting whose name says it may hold a
# credential: Django's list, plus URLs (DATABASE_URL, REDIS_URL) and brokers.
DEFAULT_EXCEPTION_REPORTER_FILTER = "project.errors.CredentialsFilter"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before django_pg_migration_tools: its migrate_with_timeouts is replaced
    # by backfill's, which waits for a concurrent run instead of crashing.
    "backfill",
    "django_pg_migration_tools",
    "axes",
    "workers",
    "organizations",
]

MIDDLEWARE = [
    # Before anything reads the Host header: compose's health check asks
    # http://127.0.0.1:8000/readyz from inside the container.
    "project.health.LoopbackHealthMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into a 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASE_URL = url_with_quoted_password(
    os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/backfill")
)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=60,
        conn_health_checks=True,
    )
}
DATABASES["default"].setdefault("OPTIONS", {})
# Fail fast instead of hanging when PostgreSQL is unreachable.
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
DATABASES["default"].setdefault("TEST", {})
DATABASES["default"]["TEST"].setdefault("NAME", os.environ.get("TEST_DATABASE_NAME"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for
# one username from one address, that pair is refused (429) for the cool-off,
# even with the right password; `manage.py axes_reset_username NAME` lifts it.
# The address is REMOTE_ADDR: behind a proxy every login comes from the proxy,
# so the limit then holds per username.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("AXES_COOLOFF_MINUTES", "30")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Usernames longer than any account's are cut to 150 characters before axes
# stores them (its columns hold 255): the failed-login page, not a 500.
AXES_USERNAME_CALLABLE = "project.login.throttled_username"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/backfill/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
# WhiteNoise serves the collected files from the web process, compressed and
# with far-future cache headers on hashed names (`manage.py collectstatic`).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Failed logins and lockouts (warnings), not every start and success: a
    # command's error stays one line.
    "loggers": {"axes": {"level": "WARNING"}},
}

# --- Celery -----------------------------------------------------------------
REDIS_URL = url_with_quoted_password(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))

# One visibility timeout for every place Celery reads it. A message that is
# not acknowledged within this time is delivered again; tasks are bounded far
# below it (BACKFILL_TASK_SECONDS), so redelivery only follows a lost worker.
CELERY_VISIBILITY_TIMEOUT = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))
_redis_transport_options = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "socket_connect_timeout": 5,
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = dict(_redis_transport_options)
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = dict(_redis_transport_options)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
# acks_late and reject_on_worker_lost are set on run_slice itself: the slice's
# delivery guarantee belongs to the task, whatever the project's defaults.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"workers.tasks.*": {"queue": "backfill"}}
# Hard limits far below the visibility timeout and far above a slice run.
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Task events, for `celery -A project events` or Flower to watch the workers.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TIMEZONE = TIME_ZONE

# The sweeper recovers killed workers and lost messages: a slice whose lease
# expired (BACKFILL_LEASE_SECONDS) is dispatched again at the next sweep.
CELERY_BEAT_SCHEDULE = {
    "backfill-sweep": {
        "task": "workers.tasks.sweep",
        "schedule": float(os.environ.get("BACKFILL_SWEEP_SECONDS", "10")),
        "options": {"expires": 30},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = os.environ.get(
    "CELERY_BEAT_SCHEDULE_FILENAME", str(BASE_DIR / ".celerybeat-schedule")
)

# --- Backfill engine (defaults and meanings in backfill/conf.py) -------------
BACKFILL_DISPATCHER = "workers.dispatch.CeleryDispatcher"
BACKFILL_LEASE_SECONDS = int(os.environ.get("BACKFILL_LEASE_SECONDS", "45"))
BACKFILL_API_TOKEN = os.environ.get("BACKFILL_API_TOKEN") or None
# Schema steps wait for a gap in the table's locks instead of queueing (backfill/schema/gaps.py).
BACKFILL_DDL_WAIT_FOR_GAPS = env_bool("BACKFILL_DDL_WAIT_FOR_GAPS", True)
