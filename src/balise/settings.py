"""Balise settings: every value comes from the environment (BALISE_*, DATABASE_URL).

Secrets may also come from a file: for any secret NAME, NAME_FILE names a file whose
content is the value. Nothing secret is ever read from the repository.
"""

import importlib.util
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent


def env(name: str, default: str = "") -> str:
    """Read NAME from the environment, or the content of the file named by NAME_FILE."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    return env(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    return int(env(name, str(default)))


def env_float(name: str, default: float) -> float:
    return float(env(name, str(default)))


DATA_DIR = Path(env("BALISE_DATA_DIR", "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else a random one kept in the data directory."""
    value = env("BALISE_SECRET_KEY")
    if value:
        return value
    path = DATA_DIR / "secret_key"
    if not path.exists():
        import secrets

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("BALISE_DEBUG")
ALLOWED_HOSTS = [h for h in env("BALISE_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env("BALISE_CSRF_TRUSTED_ORIGINS").split(",") if o]
# Absolute base of links sent to contacts (SMS, calls); set it to the public address.
SITE_URL = env("BALISE_SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "balise.staff",  # first: its admin/base_site.html offers staff a second factor
    "balise.staff.admin_config.StaffAdminConfig",  # django.contrib.admin, with the second-factor site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "balise.associations",
    "balise.people",
    "balise.devices",
    "balise.alerts",
    "balise.dispatch",
    "balise.providers",
    "balise.tracking",
    "balise.inbound",
    "balise.voice",
    "balise.evidence",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "balise.console",
    "balise.supervision",
    "balise.integrations.flic",
    "balise.programmes",
    "balise.stock",
    "balise.closure",
    "balise.reports",
]

MIDDLEWARE = [
    "balise.api.middleware.DeviceAPIBodyLimit",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A busy database answers 503 + Retry-After, never 500 (see balise.busy).
    "balise.busy.DatabaseBusyMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "balise.urls"
ASGI_APPLICATION = "balise.asgi.application"
WSGI_APPLICATION = "balise.wsgi.application"

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
                "django.template.context_processors.i18n",
                "balise.console.access.menu",
            ],
        },
    },
]


def _databases() -> dict:
    url = env("DATABASE_URL")
    if url:
        # Under ASGI each request may run on a new thread: connections kept per thread
        # pile up ("too many clients") and new ones cost a round of authentication each.
        # A bounded pool per process (psycopg_pool, through Django) avoids both.
        db = dj_database_url.parse(url, conn_max_age=0)
        if db["ENGINE"] == "django.db.backends.postgresql" and env_int("BALISE_DB_POOL_MAX", 20) > 0:
            # A connection cut by a database restart is replaced, not handed out.
            db["CONN_HEALTH_CHECKS"] = True
            db.setdefault("OPTIONS", {})["pool"] = {
                "min_size": env_int("BALISE_DB_POOL_MIN", 2),
                "max_size": env_int("BALISE_DB_POOL_MAX", 20),
                "timeout": env_float("BALISE_DB_POOL_TIMEOUT", 10.0),
            }
        if db["ENGINE"] == "django.db.backends.postgresql" and env_bool("BALISE_DB_PREPARE", True):
            # Django turns psycopg's prepared statements off (None); any number turns them
            # back on for balise.db.rows, which prepares the hot paths' few statements. The
            # ORM's own cursors bind on the client and are never prepared, whatever this says.
            # Off (BALISE_DB_PREPARE=0) behind a pooler that cannot keep them (PgBouncer < 1.21).
            db.setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
    else:
        db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA_DIR / "balise.sqlite3")}
        # Tests run on a file so that dispatcher subprocesses see the same database.
        db["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # Whether the file is the data dir's or named by a sqlite:/// DATABASE_URL (what
        # `balise serve` gets from the browser tests): without these, a transaction BEGINs
        # DEFERRED, reads, and its first write fails at once with "database is locked"
        # whenever another connection writes (an upgrade never waits on the busy timeout).
        # Options given in the URL's query win.
        options = db.setdefault("OPTIONS", {})
        # IMMEDIATE: writers take the lock at BEGIN, so concurrent writers queue on
        # the busy timeout instead of failing on a lock upgrade.
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault("timeout", 20)
        options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    return {"default": db}


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# Staff accounts (balise.staff). Every login form that goes through Django's
# authenticate() (the back-office's, the console's) is throttled by django-axes: after
# BALISE_LOGIN_FAILURE_LIMIT failures for one username from one address, that pair is
# locked for BALISE_LOGIN_COOLOFF_MINUTES (each new failure meanwhile restarts the wait).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("BALISE_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("BALISE_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "balise.staff.views.locked_out"
AXES_CLIENT_IP_CALLABLE = "balise.staff.network.client_ip"
# Behind reverse proxies: how many of them append to CLIENT_IP_HEADER (0: the header is
# ignored, the connection's address counts; never set it without such a proxy, since
# anyone can write the header).
TRUSTED_PROXIES = env_int("BALISE_TRUSTED_PROXIES", 0)
CLIENT_IP_HEADER = env("BALISE_CLIENT_IP_HEADER", "X-Forwarded-For")
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "admin:index"
# Second factor (django-otp): required for superusers, administrators and referents.
OTP_TOTP_ISSUER = env("BALISE_OTP_ISSUER", "Balise")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # superusers never see a member's TOTP secret
SESSION_COOKIE_AGE = env_int("BALISE_SESSION_SECONDS", 12 * 3600)
# /metrics: Prometheus sends "Authorization: Bearer <BALISE_METRICS_TOKEN>"; staff may
# also read it. The browsable API docs are for staff unless BALISE_PUBLIC_API_DOCS=1
# (the OpenAPI schema itself, /api/v1/openapi.json, stays public: devices and
# integrators read it, and it says nothing that docs/device-api.md does not).
METRICS_TOKEN = env("BALISE_METRICS_TOKEN")
PUBLIC_API_DOCS = env_bool("BALISE_PUBLIC_API_DOCS")

# HTTPS deployments (see README.md, "Production").
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("BALISE_SECURE_COOKIES")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SECURE_HSTS_SECONDS = env_int("BALISE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("BALISE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("BALISE_HSTS_PRELOAD")
if env_bool("BALISE_BEHIND_HTTPS_PROXY"):
    # The proxy terminates TLS and says so; it must overwrite this header from clients.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("BALISE_SSL_REDIRECT")
SECURE_REDIRECT_EXEMPT = [r"^health$"]  # load balancers probe over plain HTTP
SECURE_CONTENT_TYPE_NOSNIFF = True
# Contact pages carry their token in the URL: never sent to another site (map tiles…).
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", _("French")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("BALISE_TIME_ZONE", "Europe/Paris")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the installed apps: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
# Leaflet for the contact page's map, from the django-leaflet package's static files
# (as /static/leaflet/...; the app itself is not installed: its admin needs GDAL).
_leaflet = importlib.util.find_spec("leaflet")
STATICFILES_DIRS = [("leaflet", Path(_leaflet.submodule_search_locations[0]) / "static" / "leaflet")] if _leaflet else []

# Device API limits.
API_MAX_BODY_BYTES = env_int("BALISE_API_MAX_BODY_BYTES", 64 * 1024)
API_MAX_FIXES_PER_BATCH = env_int("BALISE_API_MAX_FIXES_PER_BATCH", 100)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("BALISE_MAX_UPLOAD_BYTES", 2 * 1024 * 1024)
# Wrong cancel PINs accepted per alert; then every cancel attempt on it is refused
# (see balise.alerts.actions.cancel_alert).
CANCEL_PIN_MAX_ATTEMPTS = max(1, env_int("BALISE_CANCEL_PIN_MAX_ATTEMPTS", 5))

# Providers, tried in this order: a comma-separated list of names (console, webhook).
PROVIDERS = [p.strip() for p in env("BALISE_PROVIDERS", "console").split(",") if p.strip()]
PROVIDER_TIMEOUT = env_float("BALISE_PROVIDER_TIMEOUT", 5.0)
WEBHOOK_URL = env("BALISE_WEBHOOK_URL")
WEBHOOK_SECRET = env("BALISE_WEBHOOK_SECRET")
CONSOLE_OUTBOX = env("BALISE_CONSOLE_OUTBOX", str(DATA_DIR / "console-outbox.jsonl"))

# Dispatcher.
DISPATCH_WORKERS = env_int("BALISE_DISPATCH_WORKERS", 32)
DISPATCH_LEASE_SECONDS = env_float("BALISE_DISPATCH_LEASE_SECONDS", 30.0)
DISPATCH_POLL_SECONDS = env_float("BALISE_DISPATCH_POLL_SECONDS", 1.0)
DISPATCH_BATCH = env_int("BALISE_DISPATCH_BATCH", 200)
DISPATCH_MAX_ATTEMPTS = env_int("BALISE_DISPATCH_MAX_ATTEMPTS", 60)
DISPATCH_BACKOFF_BASE = env_float("BALISE_DISPATCH_BACKOFF_BASE", 1.0)
DISPATCH_BACKOFF_MAX = env_float("BALISE_DISPATCH_BACKOFF_MAX", 60.0)
AUDITOR_INTERVAL_SECONDS = env_float("BALISE_AUDITOR_INTERVAL_SECONDS", 10.0)
# A row whose rendering or recording raises is retried this many times, then set aside
# as failed and the association's on-call line is told (see balise.dispatch.dispatcher).
DISPATCH_FAULT_ATTEMPTS = env_int("BALISE_DISPATCH_FAULT_ATTEMPTS", 3)
# Dispatchers beat this often; one silent for DISPATCH_TAKEOVER_SECONDS is taken for dead
# and its leased work is taken over by the others.
DISPATCH_BEAT_SECONDS = env_float("BALISE_DISPATCH_BEAT_SECONDS", 1.0)
DISPATCH_TAKEOVER_SECONDS = env_float("BALISE_DISPATCH_TAKEOVER_SECONDS", 4.0)


def env_budget(name: str, default: str) -> tuple[float, float]:
    """"BURST/REFILL_PER_HOUR", e.g. "40/20": a token bucket (see balise.alerts.budget)."""
    raw = env(name, default)
    try:
        burst, per_hour = (float(part) for part in raw.split("/"))
    except ValueError:
        burst = per_hour = -1.0
    if not (burst >= 1 and per_hour > 0):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{name} must be BURST/REFILL_PER_HOUR, e.g. {default} (got {raw!r})")
    return burst, per_hour


# Alert budgets: how many alerts a device, and an association, may fan out to contacts
# (at once, then per hour); beyond, alerts still reach the on-call line (balise.alerts.budget
# explains the defaults: no real person in danger reaches them).
ALERT_BUDGET_DEVICE = env_budget("BALISE_ALERT_BUDGET_DEVICE", "40/20")
ALERT_BUDGET_ASSOCIATION = env_budget("BALISE_ALERT_BUDGET_ASSOCIATION", "1000/500")

# Links sent to contacts stop working this long after the alert closes.
TRACKING_LINK_TTL_AFTER_CLOSE = env_int("BALISE_TRACKING_LINK_TTL_AFTER_CLOSE", 24 * 3600)
# ... and never live longer than this in total.
TRACKING_LINK_MAX_AGE = env_int("BALISE_TRACKING_LINK_MAX_AGE", 7 * 24 * 3600)
# Unknown or expired links allowed per source within 15 minutes before contact pages
# answer "too many attempts" to it (balise.tracking.shortlinks).
TRACKING_LINK_MAX_FAILURES = env_int("BALISE_TRACKING_LINK_MAX_FAILURES", 30)

# Contact pages (balise.tracking): consent links last this long; the map's tile server
# ({z}/{x}/{y} template, empty for none: the page works without tiles); offline place
# names ("off" to disable).
CONSENT_LINK_MAX_AGE = env_int("BALISE_CONSENT_LINK_MAX_AGE", 365 * 24 * 3600)
MAP_TILES_URL = env("BALISE_MAP_TILES_URL", "https://tile.openstreetmap.org/{z}/{x}/{y}.png")
MAP_TILES_ATTRIBUTION = env("BALISE_MAP_TILES_ATTRIBUTION", "&copy; OpenStreetMap contributors")
PLACE_NAMES = env("BALISE_PLACE_NAMES", "offline") != "off"
# Inbound provider webhooks (SMS replies, call status, keypad): every request is signed
# with this secret (X-Balise-Timestamp, X-Balise-Signature: see balise.providers.callbacks;
# unset: a secret derived from SECRET_KEY, known to the console provider only) or with
# Twilio's auth token; a Balise timestamp further than INBOUND_MAX_SKEW seconds is refused.
INBOUND_SECRET = env("BALISE_INBOUND_SECRET")
TWILIO_AUTH_TOKEN = env("BALISE_TWILIO_AUTH_TOKEN")
# Twilio provider (BALISE_PROVIDERS=twilio,...; see docs/providers.md): the account, the
# number messages and calls come from, Twilio's API address (changed only to point at a
# stand-in, as the tests do), and the calls started per second (Twilio's default: 1).
TWILIO_ACCOUNT_SID = env("BALISE_TWILIO_ACCOUNT_SID")
TWILIO_FROM = env("BALISE_TWILIO_FROM")
TWILIO_API_URL = env("BALISE_TWILIO_API_URL", "https://api.twilio.com").rstrip("/")
TWILIO_CALLS_PER_SECOND = env_float("BALISE_TWILIO_CALLS_PER_SECOND", 1.0)
# SMPP provider (BALISE_PROVIDERS=smpp,...; see docs/providers.md): the SMSC, the
# account (system_id and password, also as *_FILE), the number or name messages come
# from, submit_sm unanswered at a time, and the idle time after which an enquire_link
# goes out.
SMPP_HOST = env("BALISE_SMPP_HOST")
SMPP_PORT = env_int("BALISE_SMPP_PORT", 2775)
SMPP_SYSTEM_ID = env("BALISE_SMPP_SYSTEM_ID")
SMPP_PASSWORD = env("BALISE_SMPP_PASSWORD")
SMPP_SYSTEM_TYPE = env("BALISE_SMPP_SYSTEM_TYPE")
SMPP_SOURCE_ADDR = env("BALISE_SMPP_SOURCE_ADDR")
SMPP_WINDOW = env_int("BALISE_SMPP_WINDOW", 10)
SMPP_ENQUIRE_LINK_SECONDS = env_float("BALISE_SMPP_ENQUIRE_LINK_SECONDS", 30.0)
# Circuit breaker: a provider failing PROVIDER_BREAKER_FAILURES times in a row is skipped
# for PROVIDER_BREAKER_SECONDS (then tried again with one message).
PROVIDER_BREAKER_FAILURES = env_int("BALISE_PROVIDER_BREAKER_FAILURES", 5)
PROVIDER_BREAKER_SECONDS = env_float("BALISE_PROVIDER_BREAKER_SECONDS", 60.0)
INBOUND_MAX_SKEW = env_int("BALISE_INBOUND_MAX_SKEW", 300)
# Console provider call simulation: "+33612345601=no_answer,+33612345602=answered|pressed_1"
# (outcomes per number, in turn; the last one repeats), the default outcome, and the
# seconds a simulated call takes before its outcome is reported to /inbound/voice.
CONSOLE_VOICE_OUTCOMES = env("BALISE_CONSOLE_VOICE_OUTCOMES")
CONSOLE_VOICE_DEFAULT = env("BALISE_CONSOLE_VOICE_DEFAULT", "answered")
CONSOLE_VOICE_DELAY = env_float("BALISE_CONSOLE_VOICE_DELAY", 2.0)
# Console: one-time device pairing codes live this long; wrong codes allowed per source
# and overall within that time before the exchange answers "too many attempts".
PAIRING_CODE_TTL = env_int("BALISE_PAIRING_CODE_TTL", 15 * 60)
# Days a closed file keeps its personal data before `balise erase-closed` erases it,
# unless the association set its own period (balise.closure).
RETENTION_DAYS = env_int("BALISE_RETENTION_DAYS", 90)
PAIRING_MAX_FAILURES = env_int("BALISE_PAIRING_MAX_FAILURES", 10)
PAIRING_MAX_FAILURES_TOTAL = env_int("BALISE_PAIRING_MAX_FAILURES_TOTAL", 200)
# Supervision (technical alarms): how often the checks run; a heartbeating device silent
# this long, a battery below this level, no test alert for this many days raise an event.
SUPERVISION_INTERVAL_SECONDS = env_float("BALISE_SUPERVISION_INTERVAL_SECONDS", 60.0)
SUPERVISION_SILENCE_SECONDS = env_int("BALISE_SUPERVISION_SILENCE_SECONDS", 900)
SUPERVISION_LOW_BATTERY = env_int("BALISE_SUPERVISION_LOW_BATTERY", 20)
SUPERVISION_TEST_DAYS = env_int("BALISE_SUPERVISION_TEST_DAYS", 15)
# A test reminder unanswered this long (no test alert) raises "periodic test overdue".
SUPERVISION_TEST_GRACE_HOURS = env_int("BALISE_SUPERVISION_TEST_GRACE_HOURS", 48)
# A button its station reports disconnected for longer than this raises an event.
SUPERVISION_BUTTON_MINUTES = env_int("BALISE_SUPERVISION_BUTTON_MINUTES", 30)
# Voice messages recorded by the person (device API upload).
VOICE_MESSAGE_MAX_BYTES = env_int("BALISE_VOICE_MESSAGE_MAX_BYTES", 1024 * 1024)
# Flic buttons (balise.integrations.flic): clock skew allowed on a token's expiry, and the
# largest webhook body (a Flic token is well under 2 KB). Each association's HS256
# secret, when it uses one, is BALISE_FLIC_SECRET_<SLUG> (or _FILE).
FLIC_JWT_LEEWAY_SECONDS = env_int("BALISE_FLIC_JWT_LEEWAY_SECONDS", 30)
FLIC_MAX_BODY_BYTES = env_int("BALISE_FLIC_MAX_BODY_BYTES", 8 * 1024)

# Every handler masks tokens (contact links, calls, devices) and phone numbers
# (balise.logfilter). Django's own handlers (debug console, admin e-mails, runserver) and
# uvicorn's are replaced: their records reach the root handler, and only it writes.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_secrets": {"()": "balise.logfilter.MaskSecrets"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["mask_secrets"]}},
    "root": {"handlers": ["console"], "level": env("BALISE_LOG_LEVEL", "INFO")},
    # httpx logs every request with its URL at INFO: provider URLs may carry numbers.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        **{name: {"handlers": [], "propagate": True}
           for name in ("django", "django.server", "uvicorn", "uvicorn.error", "uvicorn.access")},
        "axes": {"level": "WARNING"},  # its start banner; failures and lockouts stay (names masked)
    },
}
