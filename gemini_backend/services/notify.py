"""Telling waiters that a reply finished: Redis pub/sub in services mode, database polling when embedded."""
from __future__ import annotations

import logging
import time
from typing import Callable

from flask import current_app

from gemini_backend.extensions import get_redis

log = logging.getLogger(__name__)
EMBEDDED_POLL_SECONDS = 0.2


def _channel(reply_id: int) -> str:
    return f"gb:reply-done:{reply_id}"


def announce_reply_finished(reply_id: int, status: str) -> None:
    """Wake everyone waiting on this reply (a lost message only costs a waiter its timeout)."""
    if not current_app.config["REDIS_URL"]:
        return
    try:
        get_redis().publish(_channel(reply_id), status)
    except Exception as exc:
        log.warning("could not announce reply %s: %s", reply_id, exc)


def wait_for_reply(reply_id: int, timeout: float, is_finished: Callable[[], bool]) -> bool:
    """Block up to timeout until is_finished() is true; True if it finished.

    is_finished must not keep a database connection checked out: waiting holds none.
    """
    deadline = time.monotonic() + timeout
    if current_app.config["REDIS_URL"]:
        try:
            return _wait_pubsub(reply_id, deadline, is_finished)
        except Exception as exc:  # Redis down: fall back to polling rather than fail the request
            log.warning("reply wait falls back to polling: %s", exc)
    while True:
        if is_finished():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(EMBEDDED_POLL_SECONDS, remaining))


def _wait_pubsub(reply_id: int, deadline: float, is_finished: Callable[[], bool]) -> bool:
    pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(_channel(reply_id))
        # Checked after subscribing, so a finish between the two cannot be missed.
        if is_finished():
            return True
        while (remaining := deadline - time.monotonic()) > 0:
            if pubsub.get_message(timeout=min(remaining, 1.0)) is not None:
                return True
        return is_finished()
    finally:
        pubsub.close()
