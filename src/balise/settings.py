"""Balise settings: every value comes from the environment (BALISE_*, DATABASE_URL).

Secrets may also come from a file: for any secret NAME, NAME_FILE names a file whose
content is the value. Nothing secret is ever read from the repository.
"""

import importlib.util
import os
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
    "django.contrib.admin",
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
    "balise.integrations.flic",
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
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    else:
        db = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "balise.sqlite3"),
            "OPTIONS": {
                # IMMEDIATE: writers take the lock at BEGIN, so concurrent writers queue on
                # the busy timeout instead of failing on a lock upgrade.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
        # Tests run on a file so that dispatcher subprocesses see the same database.
        db["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
    return {"default": db}


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

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

# Links sent to contacts stop working this long after the alert closes.
TRACKING_LINK_TTL_AFTER_CLOSE = env_int("BALISE_TRACKING_LINK_TTL_AFTER_CLOSE", 24 * 3600)
# ... and never live longer than this in total.
TRACKING_LINK_MAX_AGE = env_int("BALISE_TRACKING_LINK_MAX_AGE", 7 * 24 * 3600)

# Contact pages (balise.tracking): consent links last this long; the map's tile server
# ({z}/{x}/{y} template, empty for none: the page works without tiles); offline place
# names ("off" to disable).
CONSENT_LINK_MAX_AGE = env_int("BALISE_CONSENT_LINK_MAX_AGE", 365 * 24 * 3600)
MAP_TILES_URL = env("BALISE_MAP_TILES_URL", "https://tile.openstreetmap.org/{z}/{x}/{y}.png")
MAP_TILES_ATTRIBUTION = env("BALISE_MAP_TILES_ATTRIBUTION", "&copy; OpenStreetMap contributors")
PLACE_NAMES = env("BALISE_PLACE_NAMES", "offline") != "off"
# Inbound provider webhooks (SMS replies, call status, keypad): requests are signed with
# this secret (X-Balise-Signature: hex HMAC-SHA256 of the body) or Twilio's auth token.
INBOUND_SECRET = env("BALISE_INBOUND_SECRET")
TWILIO_AUTH_TOKEN = env("BALISE_TWILIO_AUTH_TOKEN")
# Console provider call simulation: "+33612345601=no_answer,+33612345602=answered|pressed_1"
# (outcomes per number, in turn; the last one repeats), the default outcome, and the
# seconds a simulated call takes before its outcome is reported to /inbound/voice.
CONSOLE_VOICE_OUTCOMES = env("BALISE_CONSOLE_VOICE_OUTCOMES")
CONSOLE_VOICE_DEFAULT = env("BALISE_CONSOLE_VOICE_DEFAULT", "answered")
CONSOLE_VOICE_DELAY = env_float("BALISE_CONSOLE_VOICE_DELAY", 2.0)
# Voice messages recorded by the person (device API upload).
VOICE_MESSAGE_MAX_BYTES = env_int("BALISE_VOICE_MESSAGE_MAX_BYTES", 1024 * 1024)
# Flic buttons (balise.integrations.flic): clock skew allowed on a token's expiry, and the
# largest webhook body (a Flic token is well under 2 KB). Each association's HS256
# secret, when it uses one, is BALISE_FLIC_SECRET_<SLUG> (or _FILE).
FLIC_JWT_LEEWAY_SECONDS = env_int("BALISE_FLIC_JWT_LEEWAY_SECONDS", 30)
FLIC_MAX_BODY_BYTES = env_int("BALISE_FLIC_MAX_BODY_BYTES", 8 * 1024)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("BALISE_LOG_LEVEL", "INFO")},
    # httpx logs every request with its URL at INFO: provider URLs may carry numbers.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
