"""Extension objects, created unbound and bound to the app in create_app()."""
from __future__ import annotations

import sqlite3
import time

import redis
from pathlib import Path

from flask_caching import Cache
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_sqlalchemy import SQLAlchemy
from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import Pool
from sqlalchemy.orm import DeclarativeBase

from gemini_backend import limits_sqlite  # noqa: F401  registers the sqlite:// limits storage
from gemini_backend.config import load_config
from gemini_backend.errors import Api

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
api = Api()


def __getattr__(name: str):
    """The web-only extensions (jwt, migrate), made on first use: the Huey consumer never imports them."""
    if name == "jwt":
        from gemini_backend.verified_tokens import RememberingJWTManager
        value = RememberingJWTManager()
    elif name == "migrate":
        from flask_migrate import Migrate
        value = Migrate()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
cache = Cache()


class _NoRevocation:
    """Huey without task revocation: it costs two queue round trips per task (a check before, a cleanup after),
    and nothing here revokes tasks; a reply is stopped through its row, which every attempt re-checks."""

    def is_revoked(self, task, timestamp=None, peek=True) -> bool:
        return False

    def delete(self, key):
        if key.startswith("r:"):  # Task.revoke_id: the per-task revocation flag, which is never set
            return False
        return super().delete(key)


class ReplyRedisHuey(_NoRevocation, RedisHuey):
    """RedisHuey without revocation."""


class ReplySqliteHuey(_NoRevocation, SqliteHuey):
    """SqliteHuey without revocation."""


def create_huey() -> Huey:
    """The queue: Huey on Redis in services mode, on SQLite when embedded (read from the environment,
    because the consumer imports this module before any app exists)."""
    cfg = load_config()
    if cfg["QUEUE_URL"]:
        # The socket timeout must outlast the consumer's blocking read (1 s) yet stop a dead server hanging us.
        pool = redis.ConnectionPool.from_url(cfg["QUEUE_URL"], socket_timeout=max(cfg["REDIS_SOCKET_TIMEOUT"], 5.0),
                                             socket_connect_timeout=cfg["REDIS_SOCKET_TIMEOUT"],
                                             health_check_interval=30)
        # results=False: nothing reads task return values, and stored results would pile up forever.
        return ReplyRedisHuey(cfg["QUEUE_NAME"], connection_pool=pool, immediate=cfg["HUEY_IMMEDIATE"], utc=True,
                              results=False)
    Path(cfg["HUEY_SQLITE_PATH"]).parent.mkdir(parents=True, exist_ok=True)
    return ReplySqliteHuey(cfg["QUEUE_NAME"], filename=cfg["HUEY_SQLITE_PATH"], immediate=cfg["HUEY_IMMEDIATE"],
                           utc=True, timeout=10, results=False)


huey = create_huey()


def bind_extensions(app) -> None:
    """init_app every extension and the pieces that hang on them (error shape, JWT loaders, engine pool)."""
    from gemini_backend import models  # noqa: F401  the models must be known to Migrate and the API
    from gemini_backend.services import tokens  # noqa: F401  registers the JWT revocation and user loaders
    from gemini_backend import extensions  # jwt and migrate are made on first attribute access
    from gemini_backend.errors import register_error_handlers, register_jwt_loaders

    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config)
    db.init_app(app)
    extensions.migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"),
                                render_as_batch=True, compare_type=True)
    api.init_app(app)
    extensions.jwt.init_app(app)
    register_jwt_loaders(extensions.jwt)
    limiter.init_app(app)
    cache.init_app(app)
    register_error_handlers(app)
    app.extensions["huey"] = huey
    from gemini_backend import tasks
    tasks.bind_app(app)


def engine_options(cfg) -> dict:
    """Pool and connect settings: fail fast when the database is down, never wait forever for a connection."""
    uri = cfg["SQLALCHEMY_DATABASE_URI"]
    options = dict(cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if uri.startswith("sqlite"):
        options.setdefault("connect_args", {"timeout": 15, "check_same_thread": False})
    else:
        options.setdefault("pool_size", cfg["DB_POOL_SIZE"])
        options.setdefault("max_overflow", cfg["DB_MAX_OVERFLOW"])
        options.setdefault("pool_timeout", cfg["DB_POOL_TIMEOUT"])
        options.setdefault("pool_recycle", 1800)
        options.setdefault("connect_args", {"connect_timeout": cfg["DB_CONNECT_TIMEOUT"],
                                            "application_name": "gemini-backend"})
    return options


# A connection checked back in within this many seconds is reused without a ping (see _ping_if_idle).
PING_AFTER_IDLE_SECONDS = 1.0


@event.listens_for(Pool, "checkin")
def _note_idle_since(dbapi_connection, connection_record) -> None:
    """Remember when a connection went back to the pool."""
    if connection_record is not None:
        connection_record.info["idle_since"] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _ping_if_idle(dbapi_connection, connection_record, connection_proxy) -> None:
    """Pessimistic disconnect handling, SQLAlchemy's pool-event recipe, for connections that sat idle.

    pool_pre_ping would ping on every checkout, a round trip on every request; a connection that was in use
    within the second is as good as pinged. A dead idle one is replaced (DisconnectionError makes the pool
    retry with a fresh connection), and one that dies in use invalidates the whole pool, so after a database
    restart no request meets a stale connection twice.
    """
    if isinstance(dbapi_connection, sqlite3.Connection):
        return
    idle_since = connection_record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        dbapi_connection.rollback()
    except Exception as exc:
        raise DisconnectionError(f"stale database connection: {exc}") from exc


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """SQLite: enforce foreign keys (cascading deletes) and use WAL so the web and worker processes share it."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _app_redis(name: str, **options) -> redis.Redis:
    """One Redis client per app and purpose (services mode only), made on first use."""
    from flask import current_app
    client = current_app.extensions.get(name)
    if client is None:
        timeout = current_app.config["REDIS_SOCKET_TIMEOUT"]
        options = {"socket_timeout": timeout, **options}
        client = redis.Redis.from_url(current_app.config["REDIS_URL"], socket_connect_timeout=timeout,
                                      health_check_interval=30, **options)
        current_app.extensions[name] = client
    return client


def get_redis() -> redis.Redis:
    """The app's shared Redis client, for pub/sub, streams and checks."""
    return _app_redis("redis")


def get_blocking_redis() -> redis.Redis:
    """A Redis client for long blocking reads (XREAD BLOCK on reply streams): its socket timeout outlasts them."""
    return _app_redis("redis-blocking", socket_timeout=60, decode_responses=True)
