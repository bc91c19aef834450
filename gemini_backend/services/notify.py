"""Waiting for a reply to finish: Redis pub/sub in services mode (the stream writer announces the end), database
polling when embedded."""
from __future__ import annotations

import logging
import time
from typing import Callable

from flask import current_app

from gemini_backend.extensions import get_redis

log = logging.getLogger(__name__)
EMBEDDED_POLL_SECONDS = 0.2


def channel(reply_id: int) -> str:
    """Pub/sub channel that announces a reply's end, along with its stream's end entry (a lost announcement
    only costs a waiter its timeout)."""
    return f"gb:reply-done:{reply_id}"


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
        pubsub.subscribe(channel(reply_id))
        # Checked after subscribing, so a finish between the two cannot be missed.
        if is_finished():
            return True
        while (remaining := deadline - time.monotonic()) > 0:
            if pubsub.get_message(timeout=min(remaining, 1.0)) is not None:
                return True
        return is_finished()
    finally:
        pubsub.close()
