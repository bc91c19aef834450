"""Choose and prepare the storage backend a test run uses (see conftest)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379"
OWNER_KEY = "gb-test:owner"


@dataclass
class Backend:
    """The storage a run uses; `admin_url` is the PostgreSQL database to create the test database from."""

    name: str
    database_url: str | None = None
    admin_url: str | None = None
    redis_url: str | None = None
    skip_reason: str | None = None
    instance: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="gb-test-"))

    def describe(self) -> str:
        if self.skip_reason:
            return f"{self.name} (skipped: {self.skip_reason})"
        return f"{self.name} database={self.database_url or 'sqlite'} redis={self.redis_url or '-'}"

    def create_database(self) -> None:
        if self.admin_url:
            _pg_admin(self.admin_url, f'DROP DATABASE IF EXISTS "{_dbname(self.database_url)}"')
            _pg_admin(self.admin_url, f'CREATE DATABASE "{_dbname(self.database_url)}"')

    def drop_database(self) -> None:
        if self.admin_url:
            _pg_admin(self.admin_url, f'DROP DATABASE IF EXISTS "{_dbname(self.database_url)}" WITH (FORCE)')


def _dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _pg_admin(admin_url: str, sql: str) -> None:
    import psycopg2
    conn = psycopg2.connect(admin_url, connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _reachable(pg_url: str, redis_url: str) -> str | None:
    """None when both servers answer, else what to start."""
    import psycopg2
    import redis
    try:
        psycopg2.connect(pg_url, connect_timeout=3).close()
    except Exception as exc:
        return (f"PostgreSQL not reachable at {pg_url} ({exc.__class__.__name__}); start it or set "
                "TEST_DATABASE_URL")
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis not reachable at {redis_url} ({exc.__class__.__name__}); start it or set TEST_REDIS_URL"
    return None


def _claim_redis_db(url: str) -> str:
    """A Redis database number of this run's own (15 down to 1), so concurrent test runs never flush each other."""
    import redis
    parts = urlsplit(url)
    if parts.path.strip("/"):
        return url  # an explicit database was asked for
    for number in range(15, 0, -1):
        candidate = urlunsplit(parts._replace(path=f"/{number}"))
        client = redis.Redis.from_url(candidate)
        if client.set(OWNER_KEY, os.getpid(), nx=True, ex=4 * 3600):
            atexit.register(client.delete, OWNER_KEY)
            return candidate
    raise SystemExit("every Redis database 1-15 is taken by another test run; set TEST_REDIS_URL")


def select() -> Backend:
    """Read TEST_BACKEND and export the matching environment for the app under test."""
    name = os.environ.get("TEST_BACKEND", "embedded")
    for var in ("DATABASE_URL", "REDIS_URL", "GEMINI_API_KEY", "GEMINI_BASE_URL", "STRIPE_SECRET_KEY",
                "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "STRIPE_PRO_PRICE_ID", "CORS_ORIGINS"):
        os.environ.pop(var, None)
    os.environ["APP_ENV"] = "test"
    os.environ["OTP_DELIVERY"] = "response"
    if name == "services":
        admin = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
        redis_url = os.environ.get("TEST_REDIS_URL") or DEFAULT_REDIS
        backend = Backend("services", admin_url=admin, redis_url=redis_url, skip_reason=_reachable(admin, redis_url))
        if not backend.skip_reason:
            backend.redis_url = redis_url = _claim_redis_db(redis_url)
        if backend.skip_reason and os.environ.get("REQUIRE_SERVICES"):
            raise SystemExit(f"REQUIRE_SERVICES is set but {backend.skip_reason}")
        parts = urlsplit(admin)
        backend.database_url = urlunsplit(parts._replace(path=f"/gb_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"))
        os.environ["DATABASE_URL"] = backend.database_url
        os.environ["REDIS_URL"] = redis_url
    else:
        backend = Backend("embedded")
    os.environ["INSTANCE_PATH"] = backend.instance
    atexit.register(shutil.rmtree, backend.instance, True)
    return backend


def empty_all_stores(app) -> None:
    """Empty every table, the queue, the limit counters and the cache, so each test starts clean."""
    from sqlalchemy import text

    from gemini_backend.extensions import cache, db, huey, limiter
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
    else:
        for table in tables:
            db.session.execute(text(f"DELETE FROM {table}"))
    db.session.commit()
    if app.config["REDIS_URL"]:
        import redis
        client = redis.Redis.from_url(app.config["REDIS_URL"])
        client.flushdb()
        client.set(OWNER_KEY, os.getpid(), ex=4 * 3600)
    else:
        huey.flush()
        limiter.reset()
        cache.clear()
