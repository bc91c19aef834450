"""The Huey queue: the instance, the app its tasks run in, and task decorators that enter that app's context.

The lowest layer of the reply path: it knows settings, Redis and SQLite, never services. Services declare their
own tasks with `app_task` (Huey's Flask recipe); `gemini_backend.worker` is the consumer's entry module.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import redis
from flask import Flask
from huey import RedisHuey, SqliteHuey
from huey.api import Huey

from gemini_backend.config import load_config

_app: Flask | None = None


def create_huey() -> Huey:
    """The queue: Huey on Redis in services mode, on SQLite when embedded (read from the environment,
    because the consumer imports this module before any app exists)."""
    cfg = load_config()
    if cfg["QUEUE_URL"]:
        # Bounded: an idle consumer worker holds a connection while it waits in BRPOP, and hundreds of greenlet
        # workers must not open hundreds of connections. The others wait for the pool; the short blocking read
        # (QUEUE_READ_TIMEOUT) passes the connections round quickly, so a graceful stop is not held up by them.
        # The socket timeout must outlast that read yet stop a dead server hanging us.
        pool = redis.BlockingConnectionPool.from_url(
            cfg["QUEUE_URL"], max_connections=cfg["QUEUE_POOL_SIZE"], timeout=None,
            socket_timeout=max(cfg["REDIS_SOCKET_TIMEOUT"], 5.0),
            socket_connect_timeout=cfg["REDIS_SOCKET_TIMEOUT"], health_check_interval=30)
        # results=False: nothing reads task return values, and stored results would pile up forever.
        return RedisHuey(cfg["QUEUE_NAME"], connection_pool=pool, immediate=cfg["HUEY_IMMEDIATE"], utc=True,
                              results=False, read_timeout=cfg["QUEUE_READ_TIMEOUT"])
    Path(cfg["HUEY_SQLITE_PATH"]).parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(cfg["QUEUE_NAME"], filename=cfg["HUEY_SQLITE_PATH"], immediate=cfg["HUEY_IMMEDIATE"],
                           utc=True, timeout=10, results=False)


huey = create_huey()


def bind_app(app: Flask) -> None:
    """Run tasks in this app's context (create_app binds the app it makes, web or worker)."""
    global _app
    _app = app


def bound_app() -> Flask:
    """The app tasks run in."""
    if _app is None:
        raise RuntimeError("no app is bound to the task queue: create_app() binds one")
    return _app


def _in_app_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Exceptions propagate on purpose: Huey's retries and retry_delay depend on them.
        with bound_app().app_context():
            return fn(*args, **kwargs)
    return wrapper


def app_task(**task_options: Any) -> Callable[[Callable[..., Any]], Any]:
    """huey.task that runs the function inside the bound app's context (Huey's Flask recipe)."""
    def decorator(fn: Callable[..., Any]):
        return huey.task(**task_options)(_in_app_context(fn))
    return decorator


def app_periodic_task(schedule: Callable, **task_options: Any) -> Callable[[Callable[..., Any]], Any]:
    """huey.periodic_task that runs the function inside the bound app's context."""
    def decorator(fn: Callable[..., Any]):
        return huey.periodic_task(schedule, **task_options)(_in_app_context(fn))
    return decorator
