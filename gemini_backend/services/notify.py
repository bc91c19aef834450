"""Waiting for a reply to finish: the process's Redis listener in services mode (the reply's stream announces its
end), database polling when embedded."""
from __future__ import annotations

import logging
import time
from typing import Callable

from flask import current_app

from gemini_backend.services import streams

log = logging.getLogger(__name__)
EMBEDDED_POLL_SECONDS = 0.2
# A lost announcement costs a waiter at most this long: the row is checked again this often.
RECHECK_SECONDS = 2.0


def wait_for_reply(reply_id: int, timeout: float, is_finished: Callable[[], bool]) -> bool:
    """Block up to timeout until is_finished() is true; True if it finished.

    is_finished must not keep a database connection checked out: waiting holds none.
    """
    deadline = time.monotonic() + timeout
    if current_app.config["REDIS_URL"]:
        try:
            return _wait_for_announcement(reply_id, deadline, is_finished)
        except Exception as exc:  # Redis down: fall back to polling rather than fail the request
            log.warning("reply wait falls back to polling: %s", exc)
    while True:
        if is_finished():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(EMBEDDED_POLL_SECONDS, remaining))


def _wait_for_announcement(reply_id: int, deadline: float, is_finished: Callable[[], bool]) -> bool:
    with streams.watch(reply_id) as watch:
        # Checked after the watch began, so an end between the two cannot be missed.
        if is_finished():
            return True
        while (remaining := deadline - time.monotonic()) > 0:
            message = watch.get(min(remaining, RECHECK_SECONDS))
            if message is not None and not streams.may_announce_end(message):
                continue  # a chunk of the reply
            if is_finished():
                return True
        return is_finished()

