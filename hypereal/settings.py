"""Settings come from the environment; every setting is listed with its default in .env.example.

No DATABASE_URL → a SQLite file; no REDIS_URL → embedded fallbacks (local-memory cache, in-memory
channel layer, a filesystem Celery broker), so `make run` needs no server at all.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HYPEREAL_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and env_bool("HYPEREAL_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("SECRET_KEY must be set in production.")
    SECRET_KEY = "dev-insecure-secret-key-change-me"  # embedded default only; see .env.example
# Encrypts upstream provider keys (and later SSO secrets) at rest; defaults to SECRET_KEY.
HYPEREAL_ENCRYPTION_KEY = os.environ.get("HYPEREAL_ENCRYPTION_KEY", SECRET_KEY)

ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "*").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "allauth",
    "allauth.account",
    "orgs",
    "billing",
    "apikeys",
    "usage",
    "gateway",
    "gpu",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

ROOT_URLCONF = "hypereal.urls"
ASGI_APPLICATION = "hypereal.asgi.application"
AUTH_USER_MODEL = "orgs.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
            ]
        },
    }
]

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    # Persistent connections, each checked before its first use in a request or gateway database call: after a
    # database restart or failover, a connection that died idle is replaced instead of failing a call.
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
                                                  conn_health_checks=True)}
    # An unreachable server fails a connection in seconds: the gateway then serves from what it last read.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5))
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "hypereal.sqlite3",
            # Gateway, worker and shell share the file: wait for the write lock instead of failing.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE",
                        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    }

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
    CELERY_BROKER_URL = REDIS_URL
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # Kombu's filesystem transport: a broker shared by the gateway and the worker, with no server.
    CELERY_BROKER_URL = "filesystem://"
    _broker_dir = VAR_DIR / "celery-broker"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir),
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_BEAT_SCHEDULE = {
    "ledger-reconcile": {"task": "billing.tasks.ledger_reconcile", "schedule": 3600},
    "holds-expire": {"task": "billing.tasks.holds_expire", "schedule": 60},
    "request-logs-retention": {"task": "usage.tasks.request_logs_retention", "schedule": 6 * 3600},
    # Webhook retries, and first attempts whose queued task was lost.
    "webhook-deliveries": {"task": "orgs.tasks.webhook_deliveries_retry", "schedule": 30},
    "webhook-deliveries-retention": {"task": "orgs.tasks.webhook_deliveries_retention", "schedule": 6 * 3600},
    "stored-files-expire": {"task": "gpu.tasks.stored_files_expire", "schedule": 3600},
    # Long-running jobs (videos, GPU runs): each sweep polls whatever is due, a claimed batch at a time.
    "jobs-poll": {"task": "gpu.tasks.jobs_poll", "schedule": 5},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Operators who get alerts such as a ledger out of balance: comma-separated emails.
ADMINS = [(e.strip(), e.strip()) for e in os.environ.get("HYPEREAL_ADMINS", "").split(",") if e.strip()]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
SERVE_STATIC = env_bool("SERVE_STATIC", True)

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Hypereal <no-reply@hypereal.local>")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)

REST_FRAMEWORK = {
    # An API key named in the Authorization header wins over the session (management API keys, scoped).
    "DEFAULT_AUTHENTICATION_CLASSES": ["apikeys.api.authentication.ApiKeyAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},  # one line per upstream call
}

# Stripe top-ups (credits are bought at 1 credit per US cent). STRIPE_API_BASE points the SDK at
# another address (tests use a local stand-in for Stripe's servers).
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")
# Organization webhooks go to https endpoints only, unless this allows plain http (local receivers, tests).
HYPEREAL_WEBHOOKS_ALLOW_LOCAL = env_bool("HYPEREAL_WEBHOOKS_ALLOW_LOCAL", False)
PUBLIC_URL = os.environ.get("HYPEREAL_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/usage"

# Accounts (django-allauth): email + password, verified email, throttled logins.
ACCOUNT_ADAPTER = "orgs.adapters.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = os.environ.get("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key", "signup": "20/m/ip", "reset_password": "20/m/ip,5/m/key"}
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)

# Gateway: money is integer micro-credits (1 credit = 1,000,000 µcr; 100 credits = 1 USD).
HYPEREAL = {
    "MIN_BALANCE_CREDITS": env_int("HYPEREAL_MIN_BALANCE_CREDITS", 200),
    "MAX_BODY_BYTES": env_int("HYPEREAL_MAX_BODY_BYTES", 10 * 1024 * 1024),
    "KEY_CACHE_SECONDS": env_int("HYPEREAL_KEY_CACHE_SECONDS", 5),
    "KEY_STALE_SECONDS": env_int("HYPEREAL_KEY_STALE_SECONDS", 300),  # served while the database is down
    "BALANCE_CACHE_SECONDS": env_int("HYPEREAL_BALANCE_CACHE_SECONDS", 2),
    "CATALOG_REFRESH_SECONDS": env_int("HYPEREAL_CATALOG_REFRESH_SECONDS", 10),
    "METER_FLUSH_MS": env_int("HYPEREAL_METER_FLUSH_MS", 50),
    "METER_FLUSH_CALLS": env_int("HYPEREAL_METER_FLUSH_CALLS", 32),
    "UPSTREAM_CONNECT_TIMEOUT": float(os.environ.get("HYPEREAL_UPSTREAM_CONNECT_TIMEOUT", "10")),
    "UPSTREAM_READ_TIMEOUT": float(os.environ.get("HYPEREAL_UPSTREAM_READ_TIMEOUT", "300")),
    "STREAM_PING_SECONDS": float(os.environ.get("HYPEREAL_STREAM_PING_SECONDS", "15")),
    "SIMULATOR_URL": os.environ.get("HYPEREAL_SIMULATOR_URL", "http://127.0.0.1:9100"),
    # Traffic control (0 = unlimited); organizations can override the limits in admin.
    "DEFAULT_RPM": env_int("HYPEREAL_DEFAULT_RPM", 600),
    "DEFAULT_TPM": env_int("HYPEREAL_DEFAULT_TPM", 2_000_000),
    "OUTPUT_TOKENS_RESERVE": env_int("HYPEREAL_OUTPUT_TOKENS_RESERVE", 1024),
    "REQUEST_DEADLINE_SECONDS": float(os.environ.get("HYPEREAL_REQUEST_DEADLINE_SECONDS", "600")),
    "RETRY_BACKOFF_MS": env_int("HYPEREAL_RETRY_BACKOFF_MS", 100),
    "COOLDOWN_FAILURES": env_int("HYPEREAL_COOLDOWN_FAILURES", 3),
    "COOLDOWN_SECONDS": env_int("HYPEREAL_COOLDOWN_SECONDS", 30),
    "LOG_RETENTION_DAYS": env_int("HYPEREAL_LOG_RETENTION_DAYS", 90),
    # Images and audio: the largest media body (uploads, data URLs) and media file fetched from a client's
    # URL; and whether those URLs may be plain http or reach private and loopback addresses (tests, dev).
    "MEDIA_MAX_BYTES": env_int("HYPEREAL_MEDIA_MAX_BYTES", 20 * 1024 * 1024),
    "MEDIA_FETCH_ALLOW_LOCAL": env_bool("HYPEREAL_MEDIA_FETCH_ALLOW_LOCAL", False),
    # Jobs: how long a submit may hold its connection for the result, and when a job is given up.
    "JOB_WAIT_SECONDS": float(os.environ.get("HYPEREAL_JOB_WAIT_SECONDS", "240")),
    "JOB_DEADLINE_SECONDS": env_int("HYPEREAL_JOB_DEADLINE_SECONDS", 3600),
    # The compute provider (Django admin → Compute providers, by name) new GPU deployments go to; empty = the
    # first enabled one.
    "DEPLOYMENT_COMPUTE": os.environ.get("HYPEREAL_DEPLOYMENT_COMPUTE", ""),
    # Connections (gateway/server.py, per process): a request's headers must arrive within HEADER_TIMEOUT
    # and its body within BODY_TIMEOUT (408 otherwise); a connection idle between requests, or opened and
    # never used, closes after IDLE_TIMEOUT; a client that stops reading its response for SEND_TIMEOUT is
    # dropped (and billed for what was sent); one address holds at most MAX_CONNECTIONS_PER_CLIENT (0 = no
    # cap; behind a proxy every client shares its address, so raise it or set 0 and cap at the proxy).
    "HEADER_TIMEOUT_SECONDS": float(os.environ.get("HYPEREAL_HEADER_TIMEOUT_SECONDS", "10")),
    "BODY_TIMEOUT_SECONDS": float(os.environ.get("HYPEREAL_BODY_TIMEOUT_SECONDS", "60")),
    "IDLE_TIMEOUT_SECONDS": float(os.environ.get("HYPEREAL_IDLE_TIMEOUT_SECONDS", "15")),
    "SEND_TIMEOUT_SECONDS": float(os.environ.get("HYPEREAL_SEND_TIMEOUT_SECONDS", "30")),
    "MAX_CONNECTIONS_PER_CLIENT": env_int("HYPEREAL_MAX_CONNECTIONS_PER_CLIENT", 256),
}


# --- Storage of job inputs and outputs (gpu app) ---
# Files live in the "hypereal" storage: the local filesystem by default, any S3-compatible store (S3, R2,
# MinIO) with HYPEREAL_STORAGE_BACKEND=s3. Objects are keyed org_<id>/<kind>/<file id>/<filename>.
# Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (read by django-storages itself).
HYPEREAL_STORAGE_BACKEND = os.environ.get("HYPEREAL_STORAGE_BACKEND", "filesystem")
if HYPEREAL_STORAGE_BACKEND == "s3":
    if not os.environ.get("HYPEREAL_S3_BUCKET"):
        raise ImproperlyConfigured("HYPEREAL_STORAGE_BACKEND=s3 needs HYPEREAL_S3_BUCKET.")
    _file_storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": os.environ["HYPEREAL_S3_BUCKET"],
        "endpoint_url": os.environ.get("HYPEREAL_S3_ENDPOINT_URL") or None,  # R2, MinIO; unset → AWS
        "region_name": os.environ.get("HYPEREAL_S3_REGION") or None,
        "location": os.environ.get("HYPEREAL_S3_PREFIX", ""),  # key prefix inside the bucket
        "addressing_style": os.environ.get("HYPEREAL_S3_ADDRESSING_STYLE") or None,  # "path" for some MinIOs
        "file_overwrite": True,  # keys hold a unique file id: skip django-storages' existence check
        "signature_version": "s3v4",  # botocore would presign SigV2 URLs, which R2 and newer regions refuse
        "default_acl": None,  # private objects: reached only through presigned URLs
    }}
elif HYPEREAL_STORAGE_BACKEND == "filesystem":
    _file_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage",
                     "OPTIONS": {"location": os.environ.get("HYPEREAL_STORAGE_DIR", VAR_DIR / "storage")}}
else:
    raise ImproperlyConfigured(f"HYPEREAL_STORAGE_BACKEND={HYPEREAL_STORAGE_BACKEND}: use filesystem or s3.")
STORAGES = {  # Django's own two defaults, plus ours
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "hypereal": _file_storage,
}
_MIB = 1024 * 1024
HYPEREAL_STORAGE = {
    "URL_SECONDS": env_int("HYPEREAL_STORAGE_URL_SECONDS", 3600),  # lifetime of download and upload URLs
    "MAX_BYTES": {
        "input": env_int("HYPEREAL_STORAGE_INPUT_MAX_BYTES", 100 * _MIB),
        "output": env_int("HYPEREAL_STORAGE_OUTPUT_MAX_BYTES", 2048 * _MIB),
        "dataset": env_int("HYPEREAL_STORAGE_DATASET_MAX_BYTES", 5120 * _MIB),
        "weights": env_int("HYPEREAL_STORAGE_WEIGHTS_MAX_BYTES", 5120 * _MIB),
    },
    "RETENTION_DAYS": {  # 0 = keep until deleted
        "input": env_int("HYPEREAL_STORAGE_INPUT_RETENTION_DAYS", 7),
        "output": env_int("HYPEREAL_STORAGE_OUTPUT_RETENTION_DAYS", 30),
        "dataset": env_int("HYPEREAL_STORAGE_DATASET_RETENTION_DAYS", 0),
        "weights": env_int("HYPEREAL_STORAGE_WEIGHTS_RETENTION_DAYS", 0),
    },
}
# --- end of storage settings ---


# --- Front door: account pages, the playground, the model list ---
# The signed-in member's nav on pages outside an organization (account pages, /models), computed lazily.
TEMPLATES[0]["OPTIONS"]["context_processors"].append("orgs.pages.site_context")
# The emailed link signs in the browser that signed up (allauth only does so within that same session).
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_REDIRECT_URL = LOGIN_URL
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Hypereal] "
# /models lists the catalog and its prices to anyone (false: to signed-in members only).
HYPEREAL_MODELS_PAGE_PUBLIC = env_bool("HYPEREAL_MODELS_PAGE_PUBLIC", True)
# --- end of front door settings ---


# --- Money through faults (gateway.quota): leases, the call journal, rebuilt counters, capped output ---
HYPEREAL.update({
    # A gateway process that has not renewed its lease in Redis for this long is presumed dead: another
    # process gives its reservations back and writes the calls it journaled. Calls get 503 for 2/5 of it
    # after Redis lost its state, while every process writes its own back.
    "LEASE_SECONDS": float(os.environ.get("HYPEREAL_LEASE_SECONDS", "10")),
    # How often one process proves every Redis counter against the ledger (repairing and alerting).
    "RECONCILE_SECONDS": float(os.environ.get("HYPEREAL_RECONCILE_SECONDS", "60")),
    # The most output a call without max_tokens may produce on a model whose catalog entry has no
    # max_output_tokens (the upstream is sent this cap).
    "OUTPUT_TOKENS_CEILING": env_int("HYPEREAL_OUTPUT_TOKENS_CEILING", 32768),
    # A call without max_tokens reserves at most 1/N of what is spendable (never less than its
    # HYPEREAL_OUTPUT_TOKENS_RESERVE tokens), and is sent the max output that reservation pays for.
    "OUTPUT_RESERVE_SHARE": env_int("HYPEREAL_OUTPUT_RESERVE_SHARE", 32),
})
# --- end of money-through-faults settings ---
