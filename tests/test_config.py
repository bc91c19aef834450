"""Configuration from the environment: aliases, embedded vs services stores, production refusals."""
import pytest

from gemini_backend.config import DEV_JWT_SECRET, ConfigError, check_production, load_config

STRONG = "x" * 40


def test_aliases_are_read():
    """The alias spellings of API.md configure the canonical settings."""
    cfg = load_config({"ACCESS_TOKEN_SECRET": STRONG, "STRIPE_PRICE_ID": "price_1", "FRONTEND_URL": "https://a.example/"})
    assert cfg["JWT_SECRET_KEY"] == STRONG
    assert cfg["STRIPE_PRO_PRICE_ID"] == "price_1"
    assert cfg["DOMAIN"] == "https://a.example"
    assert load_config({"JWT_SECRET_KEY": "k" * 40})["JWT_SECRET_KEY"] == "k" * 40


def test_embedded_default_uses_local_stores(tmp_path):
    """With no DATABASE_URL/REDIS_URL: SQLite database, SQLite limits and a file cache under instance/."""
    cfg = load_config({}, instance_path=tmp_path)
    assert cfg["EMBEDDED"] is True
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'gemini.db'}"
    assert cfg["RATELIMIT_STORAGE_URI"].startswith("sqlite:///")
    assert cfg["CACHE_TYPE"] == "FileSystemCache"


def test_services_mode_uses_postgres_and_redis_with_separate_prefixes():
    """DATABASE_URL/REDIS_URL switch to PostgreSQL (psycopg2) and Redis, with a key prefix per store."""
    cfg = load_config({"DATABASE_URL": "postgres://u@h/db", "REDIS_URL": "redis://h:6379/0"})
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg2://u@h/db"
    assert cfg["CACHE_TYPE"] == "RedisCache" and cfg["RATELIMIT_STORAGE_URI"] == "redis://h:6379/0"
    assert cfg["CACHE_KEY_PREFIX"] != cfg["RATELIMIT_KEY_PREFIX"]


@pytest.mark.parametrize("env, named", [
    ({}, "JWT_SECRET"),
    ({"JWT_SECRET": DEV_JWT_SECRET}, "JWT_SECRET"),
    ({"JWT_SECRET": STRONG, "OTP_SECRET": STRONG, "OTP_DELIVERY": "response"}, "OTP_DELIVERY=response"),
    ({"JWT_SECRET": STRONG}, "OTP_SECRET"),
])
def test_production_refuses_unsafe_settings(env, named):
    """S8: APP_ENV=production with a default secret or OTP_DELIVERY=response refuses to start, naming it."""
    with pytest.raises(ConfigError) as exc:
        check_production(load_config({"APP_ENV": "production", **env}))
    assert named in str(exc.value)


def test_production_accepts_safe_settings():
    """Strong secrets and log delivery pass; OTP delivery defaults to log outside development."""
    cfg = load_config({"APP_ENV": "production", "JWT_SECRET": STRONG, "OTP_SECRET": "y" * 40})
    check_production(cfg)
    assert cfg["OTP_DELIVERY"] == "log"


def test_create_app_refuses_production_defaults(monkeypatch):
    """The factory itself refuses to build a production app with the development JWT secret."""
    from gemini_backend import create_app
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        create_app({"APP_ENV": "production", "JWT_SECRET_KEY": DEV_JWT_SECRET})
