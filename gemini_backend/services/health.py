"""Dependency checks for /readyz."""
from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import text

from gemini_backend.extensions import db, get_redis, huey

log = logging.getLogger(__name__)


def check_dependencies() -> dict[str, str]:
    """Ping each dependency; map name -> 'ok' or a short reason."""
    checks = {"database": _check(_ping_database), "queue": _check(lambda: huey.pending_count())}
    if current_app.config["REDIS_URL"]:
        checks["redis"] = _check(lambda: get_redis().ping())
    return checks


def _ping_database() -> None:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness probe failed: %s", exc)
        return f"down: {type(exc).__name__}"
