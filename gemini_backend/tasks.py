"""Huey wiring: the queue instance, tasks that run inside an app context, and periodic upkeep.

Run the consumer with `flask worker` or `huey_consumer gemini_backend.tasks.huey -k thread -w 4`.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from typing import Any, Callable

from flask import Flask
from huey import crontab
from huey.exceptions import RetryTask

from gemini_backend.extensions import huey

log = logging.getLogger(__name__)
_app: Flask | None = None
_app_lock = threading.Lock()

__all__ = ["huey", "bind_app", "app_task", "app_periodic_task", "generate_reply", "sweep_replies"]


def bind_app(app: Flask) -> None:
    """Use this app for task contexts (the web process and `flask worker` bind theirs)."""
    global _app
    _app = app


def _get_app() -> Flask:
    """The bound app, or one created from the environment (plain `huey_consumer` has none)."""
    global _app
    with _app_lock:
        if _app is None:
            from gemini_backend import ai, create_app
            _app = create_app()
            ai.preload()
        return _app


if os.path.basename(sys.argv[0]).startswith("huey_consumer"):
    # Plain `huey_consumer gemini_backend.tasks.huey` imports this module in its main thread: load the
    # Gemini SDK here, before worker threads start (their concurrent first imports can deadlock).
    from gemini_backend import ai as _ai
    _ai.preload()


def _in_app_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Exceptions propagate on purpose: Huey's retries and retry_delay depend on them.
        with _get_app().app_context():
            return fn(*args, **kwargs)
    return wrapper


def app_task(**task_options: Any) -> Callable[[Callable[..., Any]], Any]:
    """huey.task that runs the function inside an app context (Huey's Flask recipe)."""
    def decorator(fn: Callable[..., Any]):
        return huey.task(**task_options)(_in_app_context(fn))
    return decorator


def app_periodic_task(schedule: Callable, **task_options: Any) -> Callable[[Callable[..., Any]], Any]:
    """huey.periodic_task that runs the function inside an app context."""
    def decorator(fn: Callable[..., Any]):
        return huey.periodic_task(schedule, **task_options)(_in_app_context(fn))
    return decorator


@app_task(retries=3, retry_delay=10)
def generate_reply(reply_id: int) -> str:
    """Answer one pending reply (retried by Huey on transient provider errors, with backoff)."""
    from gemini_backend.services.replies import RetryLater, generate_reply as produce
    try:
        return produce(reply_id)
    except RetryLater as exc:
        # RetryTask does not use up Huey's own retries: our attempt counter in the database bounds them.
        raise RetryTask(delay=exc.delay) from None


@app_periodic_task(crontab(minute="*"))
def sweep_replies() -> dict[str, int]:
    """Re-enqueue stuck replies and fail those out of attempts (every minute)."""
    from gemini_backend.services.replies import sweep_replies as sweep
    return sweep()


@huey.on_startup()
def sweep_at_startup() -> None:
    """A consumer that starts (after a crash, say) sweeps at once instead of within the minute."""
    try:
        with _get_app().app_context():
            from gemini_backend.services.replies import sweep_replies as sweep
            sweep()
    except Exception:
        log.exception("startup sweep failed; the periodic sweep will retry")


@app_periodic_task(crontab(minute="*/15"))
def purge_expired() -> dict[str, int]:
    """Delete expired OTP challenges, revoked-token rows past expiry and idempotency keys over 24 h old."""
    from gemini_backend.services.upkeep import purge_expired_rows
    counts = purge_expired_rows()
    log.info("purged expired rows: %s", counts)
    return counts

