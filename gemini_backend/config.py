"""Configuration from environment variables (and a `.env` file), with the aliases of API.md."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from dotenv import load_dotenv

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-" + "0123456789abcdef" * 3
DEV_OTP_SECRET = "dev-only-otp-secret-change-me-" + "0123456789abcdef" * 3
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A setting that makes the app unsafe or unable to start."""


def _first(env: Mapping[str, str], *names: str, default: str | None = None) -> str | None:
    """Return the first non-empty variable among names (canonical name first, then aliases)."""
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            return value
    return default


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    return int(value) if value not in (None, "") else default


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    return float(value) if value not in (None, "") else default


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


# What Gemini reads as inline parts: images, PDF, and text (Markdown is sent to it as text/plain).
DEFAULT_ATTACHMENT_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/gif", "application/pdf",
                            "text/plain", "text/markdown")

# Replies a consumer runs at once: a greenlet costs a few KiB while it waits on Gemini; a thread or process much more.
DEFAULT_WORKER_CONCURRENCY = {"greenlet": 256, "thread": 8, "process": 2}


def _worker_type(env: Mapping[str, str]) -> str:
    value = (env.get("WORKER_TYPE") or "greenlet").lower()
    if value not in DEFAULT_WORKER_CONCURRENCY:
        raise ConfigError(f"WORKER_TYPE must be one of {', '.join(DEFAULT_WORKER_CONCURRENCY)}, got {value!r}")
    return value


def sqlalchemy_url(url: str) -> str:
    """Accept the `postgres://` spelling of hosting providers and pin the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def export_metrics_directory() -> str:
    """PROMETHEUS_MULTIPROC_DIR, else `<INSTANCE_PATH>/metrics`, created and exported, so every process of this
    machine (and each child) writes its metric samples to the same folder."""
    load_dotenv(PROJECT_ROOT / ".env", override=False)  # the same .env load_config reads
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(
        Path(os.environ.get("INSTANCE_PATH") or PROJECT_ROOT / "instance") / "metrics")
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def load_config(env: Mapping[str, str] | None = None, instance_path: str | Path | None = None) -> dict[str, Any]:
    """Build the Flask config dict from env (defaults to os.environ after reading `.env`)."""
    if env is None:
        load_dotenv(PROJECT_ROOT / ".env", override=False)
        env = os.environ
    instance = Path(instance_path or env.get("INSTANCE_PATH") or PROJECT_ROOT / "instance")
    app_env = (env.get("APP_ENV") or "development").lower()
    database_url = _first(env, "DATABASE_URL")
    redis_url = _first(env, "REDIS_URL")
    embedded = not redis_url

    cfg: dict[str, Any] = {
        "APP_ENV": app_env,
        "TESTING": app_env == "test",
        "INSTANCE_PATH": str(instance),
        "EMBEDDED": embedded,
        "PORT": _int(env, "PORT", 8000),
        "SECRET_KEY": _first(env, "SECRET_KEY", "JWT_SECRET", "JWT_SECRET_KEY", default=DEV_JWT_SECRET),
        # Database
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url(database_url) if database_url
        else f"sqlite:///{instance / 'gemini.db'}",
        "SQLALCHEMY_ENGINE_OPTIONS": {},  # idle connections are pinged on checkout (extensions._ping_if_idle)
        # Per process. Statements and transactions are short and nothing holds a connection while it waits, so a
        # few connections serve hundreds of greenlets; when all are busy a caller queues up to DB_POOL_TIMEOUT
        # (then 503). The README's budget: (web processes + consumers) x (size + overflow) <= max_connections.
        "DB_POOL_SIZE": _int(env, "DB_POOL_SIZE", 8),
        "DB_MAX_OVERFLOW": _int(env, "DB_MAX_OVERFLOW", 4),
        "DB_POOL_TIMEOUT": _float(env, "DB_POOL_TIMEOUT", 10.0),
        "DB_CONNECT_TIMEOUT": _int(env, "DB_CONNECT_TIMEOUT", 3),
        # Redis: one URL, separate key prefixes, so clearing one store never touches another
        "REDIS_URL": redis_url,
        "REDIS_SOCKET_TIMEOUT": _float(env, "REDIS_SOCKET_TIMEOUT", 3.0),
        # One bounded pool per process for the app, cache and limiter, plus the listener's one pub/sub connection
        # and the queue's pool: at most REDIS_POOL_SIZE + 1 + QUEUE_POOL_SIZE connections per process.
        "REDIS_POOL_SIZE": _int(env, "REDIS_POOL_SIZE", 24),
        "REDIS_POOL_TIMEOUT": _float(env, "REDIS_POOL_TIMEOUT", 10.0),
        "QUEUE_POOL_SIZE": _int(env, "QUEUE_POOL_SIZE", 16),
        "QUEUE_READ_TIMEOUT": _float(env, "QUEUE_READ_TIMEOUT", 0.25),
        "QUEUE_NAME": env.get("QUEUE_NAME") or "gemini",
        # The queue may live on its own Redis; by default it shares REDIS_URL under its own key prefix.
        "QUEUE_URL": env.get("QUEUE_URL") or redis_url,
        "HUEY_SQLITE_PATH": str(instance / "huey.db"),
        "HUEY_IMMEDIATE": _bool(env, "HUEY_IMMEDIATE", False),
        # The consumer: greenlets (gevent) by default, since a reply mostly waits on Gemini; WORKER_CONCURRENCY
        # replies at a time per consumer ([WORKER_THREADS] is its older name).
        "WORKER_TYPE": _worker_type(env),
        "WORKER_CONCURRENCY": _int(env, "WORKER_CONCURRENCY", _int(env, "WORKER_THREADS", 0))
        or DEFAULT_WORKER_CONCURRENCY[_worker_type(env)],
        # JWT
        "JWT_SECRET_KEY": _first(env, "JWT_SECRET", "JWT_SECRET_KEY", "ACCESS_TOKEN_SECRET", default=DEV_JWT_SECRET),
        "JWT_ALGORITHM": "HS256",
        "JWT_DECODE_ALGORITHMS": ["HS256"],
        "JWT_ACCESS_TOKEN_EXPIRES": _int(env, "JWT_ACCESS_TOKEN_EXPIRES", 30 * 60),
        "JWT_REFRESH_TOKEN_EXPIRES": _int(env, "JWT_REFRESH_TOKEN_EXPIRES", 30 * 24 * 3600),
        "JWT_TOKEN_LOCATION": ["headers"],
        "JWT_ERROR_MESSAGE_KEY": "message",
        # OTP
        "OTP_SECRET": _first(env, "OTP_SECRET", default=DEV_OTP_SECRET),
        "OTP_DELIVERY": (env.get("OTP_DELIVERY") or ("response" if app_env in ("development", "test") else "log")).lower(),
        "OTP_TTL_SECONDS": _int(env, "OTP_TTL_SECONDS", 300),
        "OTP_MAX_ATTEMPTS": _int(env, "OTP_MAX_ATTEMPTS", 5),
        "PHONE_DEFAULT_REGION": (env.get("PHONE_DEFAULT_REGION") or "US").upper(),
        "TWILIO_ACCOUNT_SID": env.get("TWILIO_ACCOUNT_SID"),
        "TWILIO_AUTH_TOKEN": env.get("TWILIO_AUTH_TOKEN"),
        "TWILIO_FROM": env.get("TWILIO_FROM"),
        "TWILIO_API_BASE": env.get("TWILIO_API_BASE"),
        # Gemini
        "GEMINI_API_KEY": _first(env, "GEMINI_API_KEY", "GOOGLE_API_KEY"),
        "GEMINI_MODEL": env.get("GEMINI_MODEL") or "gemini-2.5-flash",
        # Name a room still called "New chat" after its first reply, with TITLE_MODEL (default: the default model).
        "AUTO_TITLES": _bool(env, "AUTO_TITLES", True),
        "TITLE_MODEL": env.get("TITLE_MODEL") or None,
        # The models a room may choose, comma-separated; the first is the default (unset: GEMINI_MODEL alone).
        "GEMINI_MODELS": [m.strip() for m in (env.get("GEMINI_MODELS") or "").split(",") if m.strip()] or None,
        "GEMINI_BASE_URL": env.get("GEMINI_BASE_URL") or None,
        "GEMINI_TIMEOUT": _float(env, "GEMINI_TIMEOUT", 30.0),
        "GEMINI_SYSTEM_INSTRUCTION": env.get("GEMINI_SYSTEM_INSTRUCTION")
        or "You are a helpful, concise assistant in a chat app. Answer in the user's language.",
        "GEMINI_HISTORY_TOKEN_BUDGET": _int(env, "GEMINI_HISTORY_TOKEN_BUDGET", 8000),
        "REPLY_MAX_ATTEMPTS": _int(env, "REPLY_MAX_ATTEMPTS", 5),
        "REPLY_RETRY_DELAY": _float(env, "REPLY_RETRY_DELAY", 2.0),
        "REPLY_LEASE_SECONDS": _int(env, "REPLY_LEASE_SECONDS", 0),
        "REPLY_SWEEP_GRACE": _int(env, "REPLY_SWEEP_GRACE", 60),
        # Stripe
        "STRIPE_SECRET_KEY": env.get("STRIPE_SECRET_KEY") or None,
        "STRIPE_PRO_PRICE_ID": _first(env, "STRIPE_PRO_PRICE_ID", "STRIPE_PRICE_ID"),
        "STRIPE_WEBHOOK_SECRET": env.get("STRIPE_WEBHOOK_SECRET") or None,
        "STRIPE_API_BASE": env.get("STRIPE_API_BASE") or None,
        "DOMAIN": (_first(env, "DOMAIN", "FRONTEND_URL", default="http://localhost:5000") or "").rstrip("/"),
        # Limits and caching
        "BASIC_DAILY_LIMIT": _int(env, "BASIC_DAILY_LIMIT", 5),
        "PRO_MINUTE_LIMIT": _int(env, "PRO_MINUTE_LIMIT", 60),
        "AUTH_RATE_LIMIT": env.get("AUTH_RATE_LIMIT") or "30 per minute",
        # Reads of a public share link (GET /shared/{id}) per client address.
        "SHARE_RATE_LIMIT": env.get("SHARE_RATE_LIMIT") or "120 per minute",
        "CHATROOM_CACHE_TTL": _int(env, "CHATROOM_CACHE_TTL", 300),
        "CORS_ORIGINS": [o.strip().rstrip("/") for o in (env.get("CORS_ORIGINS") or "").split(",") if o.strip()],
        "GEMINI_RESPONSE_CACHE_TTL": _int(env, "GEMINI_RESPONSE_CACHE_TTL", 0),
        # Attachments (POST /files): the largest file per tier, and the MIME types accepted (read from the bytes).
        "UPLOAD_MAX_BYTES": _int(env, "UPLOAD_MAX_BYTES", 10 * 1024 * 1024),
        "UPLOAD_MAX_BYTES_PRO": _int(env, "UPLOAD_MAX_BYTES_PRO", 20 * 1024 * 1024),
        "ATTACHMENT_TYPES": [t.strip().lower() for t in (env.get("ATTACHMENT_TYPES") or "").split(",") if t.strip()]
        or list(DEFAULT_ATTACHMENT_TYPES),
        # HTTP
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 256 * 1024),
        "LOG_LEVEL": (env.get("LOG_LEVEL") or "INFO").upper(),
        # How many reverse proxies in front append to X-Forwarded-For; 0 ignores the header (it can be forged).
        "TRUSTED_PROXY_HOPS": _int(env, "TRUSTED_PROXY_HOPS", 0),
        # Metrics: a bearer token guarding /metrics, and a separate port that serves it instead of the public one.
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
        "METRICS_PORT": _int(env, "METRICS_PORT", 0),
        # A consumer that does not share the web's PROMETHEUS_MULTIPROC_DIR (another container or host) serves its own.
        "WORKER_METRICS_PORT": _int(env, "WORKER_METRICS_PORT", 0),
        # flask-smorest / OpenAPI
        "API_TITLE": "Gemini Backend",
        "API_VERSION": "1.0.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        "OPENAPI_SWAGGER_UI_URL": "/docs/static/",
        "OPENAPI_SWAGGER_UI_CONFIG": {"persistAuthorization": True, "displayRequestDuration": True},
    }
    cfg.update(_store_settings(cfg))
    return cfg


def _store_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Limiter and cache stores: Redis in services mode, cross-process local stores when embedded."""
    instance = Path(cfg["INSTANCE_PATH"])
    if cfg["REDIS_URL"]:
        return {
            "RATELIMIT_STORAGE_URI": cfg["REDIS_URL"],
            "RATELIMIT_STORAGE_OPTIONS": {"socket_timeout": cfg["REDIS_SOCKET_TIMEOUT"],
                                          "socket_connect_timeout": cfg["REDIS_SOCKET_TIMEOUT"]},
            "RATELIMIT_KEY_PREFIX": "gb-limits",
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": cfg["REDIS_URL"],
            "CACHE_KEY_PREFIX": "gb-cache:",
            "CACHE_OPTIONS": {"socket_timeout": cfg["REDIS_SOCKET_TIMEOUT"],
                              "socket_connect_timeout": cfg["REDIS_SOCKET_TIMEOUT"]},
            "CACHE_DEFAULT_TIMEOUT": cfg["CHATROOM_CACHE_TTL"],
        }
    # SQLite-backed limits and a file cache stay correct across gunicorn workers and the consumer.
    return {
        "RATELIMIT_STORAGE_URI": f"sqlite:///{instance / 'limits.db'}",
        "RATELIMIT_KEY_PREFIX": "gb-limits",
        "CACHE_TYPE": "FileSystemCache",
        "CACHE_DIR": str(instance / "cache"),
        "CACHE_THRESHOLD": 10000,
        "CACHE_DEFAULT_TIMEOUT": cfg["CHATROOM_CACHE_TTL"],
    }


def check_production(cfg: Mapping[str, Any]) -> None:
    """Refuse unsafe settings when APP_ENV=production, naming the setting."""
    if cfg["APP_ENV"] != "production":
        return
    problems = []
    if cfg["JWT_SECRET_KEY"] == DEV_JWT_SECRET or len(cfg["JWT_SECRET_KEY"]) < 32:
        problems.append("JWT_SECRET must be set to a random value of at least 32 characters")
    if cfg["OTP_SECRET"] == DEV_OTP_SECRET or len(cfg["OTP_SECRET"]) < 32:
        problems.append("OTP_SECRET must be set to a random value of at least 32 characters")
    if cfg["SECRET_KEY"] == DEV_JWT_SECRET:
        problems.append("SECRET_KEY (or JWT_SECRET) must not be the development default")
    if cfg["OTP_DELIVERY"] == "response":
        problems.append("OTP_DELIVERY=response returns codes in the HTTP response and is refused in production")
    if problems:
        raise ConfigError("Refusing to start with APP_ENV=production: " + "; ".join(problems) + ".")
