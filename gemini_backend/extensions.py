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
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import Pool
from sqlalchemy.orm import DeclarativeBase

from gemini_backend import limits_sqlite  # noqa: F401  registers the sqlite:// limits storage
from gemini_backend import greenlets, taskqueue
from gemini_backend.errors import Api
from gemini_backend.taskqueue import huey

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
        from flask_jwt_extended import JWTManager
        value = JWTManager()
    elif name == "migrate":
        from flask_migrate import Migrate
        value = Migrate()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
cache = Cache()


def bind_storage(app) -> None:
    """What the web and the consumer both use: the database, Redis, the limiter's and cache's stores, the queue."""
    greenlets.cooperate_with_database()
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config)
    db.init_app(app)
    share_redis_pool(app)
    limiter.init_app(app)
    cache.init_app(app)
    app.extensions["huey"] = huey
    taskqueue.bind_app(app)


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


def redis_pool(cfg) -> redis.BlockingConnectionPool:
    """A bounded pool for REDIS_URL: when every connection is busy a caller waits up to REDIS_POOL_TIMEOUT for one
    (then ConnectionError, a 503), so thousands of greenlets never open thousands of connections."""
    timeout = cfg["REDIS_SOCKET_TIMEOUT"]
    return redis.BlockingConnectionPool.from_url(
        cfg["REDIS_URL"], max_connections=cfg["REDIS_POOL_SIZE"], timeout=cfg["REDIS_POOL_TIMEOUT"],
        socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30)


def share_redis_pool(app) -> None:
    """One bounded Redis pool per app for its own client, the cache and the limiter (when they use REDIS_URL)."""
    cfg = app.config
    if not cfg["REDIS_URL"]:
        return
    pool = app.extensions["redis-pool"] = redis_pool(cfg)
    if cfg.get("CACHE_REDIS_URL") == cfg["REDIS_URL"]:
        # cachelib takes a ready client as its host.
        cfg["CACHE_REDIS_HOST"] = redis.Redis(connection_pool=pool)
        cfg.pop("CACHE_REDIS_URL")
        cfg.pop("CACHE_OPTIONS", None)
    if cfg.get("RATELIMIT_STORAGE_URI") == cfg["REDIS_URL"]:
        cfg["RATELIMIT_STORAGE_OPTIONS"] = {"connection_pool": pool}


def get_redis() -> redis.Redis:
    """The app's Redis client (services mode only), on the app's bounded pool."""
    from flask import current_app
    client = current_app.extensions.get("redis")
    if client is None:
        client = current_app.extensions["redis"] = redis.Redis(connection_pool=current_app.extensions["redis-pool"])
    return client


def new_redis_client(url: str, **options) -> redis.Redis:
    """A Redis client with a connection of its own (the pub/sub listener's), with the app's connect timeout."""
    from flask import current_app
    return redis.Redis.from_url(url, socket_connect_timeout=current_app.config["REDIS_SOCKET_TIMEOUT"],
                                health_check_interval=30, **options)
