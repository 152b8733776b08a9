"""Django settings for Siyu, read from ``SIYU_*`` environment variables.

Every knob has a safe default so that ``make demo`` runs with no configuration at all:
an embedded SQLite database and task queue under ``var/``, and secrets generated once
into ``var/`` (never a key baked into the source). Production sets the variables listed
in ``docs/configuration.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.templatetags.static import static
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

from siyu.core.config import env_bool, env_list, persistent_secret, sqlite_options

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("SIYU_DATA_DIR", Path.cwd() / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# The analytics engine's columnar copy (Parquet files; ADR 0006).
ANALYTICS_DIR = Path(os.environ.get("SIYU_ANALYTICS_DIR") or DATA_DIR / "analytics").resolve()
# Front-end packages installed from the npm registry at set-up (never committed).
NODE_MODULES_DIR = Path(os.environ.get("SIYU_NODE_MODULES", Path.cwd() / "node_modules")).resolve()

DEBUG = env_bool("SIYU_DEBUG", False)
SECRET_KEY = os.environ.get("SIYU_SECRET_KEY") or persistent_secret(DATA_DIR / "secret_key")
# Keys that encrypt tenant secrets at rest (Fernet, comma-separated; the first encrypts,
# all decrypt, so a key can be rotated in without re-encrypting at once).
ENCRYPTION_KEYS = env_list("SIYU_ENCRYPTION_KEYS") or [
    persistent_secret(DATA_DIR / "encryption_key", fernet=True)
]
ALLOWED_HOSTS = env_list("SIYU_ALLOWED_HOSTS") or ["127.0.0.1", "localhost", "testserver"]
CSRF_TRUSTED_ORIGINS = env_list("SIYU_CSRF_TRUSTED_ORIGINS")
PUBLIC_URL = os.environ.get("SIYU_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "unfold.apps.BasicAppConfig",  # the theme only: our ConsoleSite is the admin site
    "unfold.contrib.filters",
    "siyu.core.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "huey.contrib.djhuey",
    "ninja",  # serves the API docs page's Swagger UI files locally (no CDN)
    "siyu.tenancy",
    "siyu.customers",
    "siyu.community",
    "siyu.segments",
    "siyu.engagement",
    "siyu.commerce",
    "siyu.analytics",
    "siyu.core",
    "siyu.wecom",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "siyu.core.locale.SiyuLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "siyu.tenancy.middleware.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "siyu.core.api_errors.ApiErrorShapeMiddleware",
]

ROOT_URLCONF = "siyu.urls"
WSGI_APPLICATION = "siyu.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [PACKAGE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------
DATABASE_URL = os.environ.get("SIYU_DATABASE_URL") or f"sqlite:///{DATA_DIR / 'siyu.sqlite3'}"
_database = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
# Connections are kept (per thread) for this many seconds: opening one per request or task
# (and, on SQLite, setting WAL and the other pragmas again) cost more than many a request.
_database["CONN_MAX_AGE"] = int(os.environ.get("SIYU_DB_CONN_MAX_AGE", "60"))
_database["CONN_HEALTH_CHECKS"] = True
if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database["OPTIONS"] = sqlite_options(int(os.environ.get("SIYU_SQLITE_MMAP_MB", "2048")))
    # Tests use a file, not SQLite's shared-cache memory database, whose table locks ignore
    # the busy timeout: concurrency tests then behave as production's WAL file does.
    _database["TEST"] = {
        "NAME": os.environ.get("SIYU_TEST_SQLITE_NAME") or str(DATA_DIR / "test.sqlite3")
    }
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache and task queue ---------------------------------------------------------------
REDIS_URL = os.environ.get("SIYU_REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": os.environ.get("SIYU_QUEUE_NAME", "siyu"),
        "url": REDIS_URL,
        "immediate": env_bool("SIYU_TASKS_IMMEDIATE", False),
        "consumer": {
            "workers": int(os.environ.get("SIYU_WORKER_THREADS", "4")),
            "worker_type": os.environ.get("SIYU_WORKER_TYPE", "thread"),
        },
    }
else:
    # A file cache is shared by the server and the worker processes (unlike locmem).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": os.environ.get("SIYU_QUEUE_NAME", "siyu"),
        "filename": str(DATA_DIR / "queue.sqlite3"),
        "immediate": env_bool("SIYU_TASKS_IMMEDIATE", False),
        "consumer": {
            "workers": int(os.environ.get("SIYU_WORKER_THREADS", "2")),
            "worker_type": os.environ.get("SIYU_WORKER_TYPE", "thread"),
            # Poll the SQLite queue at least every second: a WeCom welcome code lives 20 s.
            "initial_delay": 0.05,
            "backoff": 1.15,
            "max_delay": 1.0,
        },
    }

# --- auth -------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = ["siyu.tenancy.auth.RolePermissionBackend"]
LOGIN_URL = reverse_lazy("admin:login")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SIYU_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- i18n -------------------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [PACKAGE_DIR / "locale"]
TIME_ZONE = os.environ.get("SIYU_TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

# --- static files -----------------------------------------------------------------------
# Uploaded imports and generated exports hold personal data: they live under the data
# directory and are served only through views that check the tenant and the data scope
# (no MEDIA_URL).
MEDIA_ROOT = DATA_DIR / "media"
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [("vendor/echarts", NODE_MODULES_DIR / "echarts" / "dist")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve straight from the finders: no collectstatic needed
WHITENOISE_AUTOREFRESH = DEBUG

# --- logging ----------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("SIYU_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The Huey consumer installs its own handler; do not print its lines twice.
        "huey": {"propagate": False},
    },
}

# --- the console (django-unfold) --------------------------------------------------------
UNFOLD = {
    "SITE_TITLE": _("Siyu console"),
    "SITE_HEADER": _("Siyu 私域"),
    "SITE_SUBHEADER": _("Private-domain operations"),
    "SITE_SYMBOL": "hub",
    "SITE_URL": "/console/",
    "SHOW_LANGUAGES": True,
    "SHOW_VIEW_ON_SITE": False,
    "SHOW_HISTORY": False,
    "ENVIRONMENT": "siyu.core.console.environment_badge",
    "DASHBOARD_CALLBACK": "siyu.core.console.dashboard_callback",
    "SCRIPTS": [lambda request: static("vendor/echarts/echarts.min.js")],
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": False,
        "navigation": "siyu.core.console.sidebar_navigation",
    },
}

# --- WeCom ------------------------------------------------------------------------------
WECOM_API_BASE = os.environ.get("SIYU_WECOM_API_BASE", "https://qyapi.weixin.qq.com/cgi-bin")
