"""Stopping a reply from any host: the request is stored on the reply (stop_requested_at, the record) and
announced on a Redis channel; the attempt answering it listens from before its claim and checks between chunks.
"""
from __future__ import annotations

import logging
import time

from sqlalchemy import select

from gemini_backend.extensions import db, get_redis
from gemini_backend.models import Message
from gemini_backend.services import streams
from gemini_backend.services.listener import RESYNC, Watch

log = logging.getLogger(__name__)
# The row is read this often as well, in case an announcement was lost (a Redis reconnect); without Redis, it is
# the only way to hear a stop.
RECHECK_SECONDS = 5.0
EMBEDDED_POLL_SECONDS = 0.5


def channel(reply_id: int) -> str:
    """Pub/sub channel on which a stop of the reply is announced."""
    return f"gb:reply-stop:{reply_id}"


def announce(reply_id: int) -> None:
    """Tell the attempt running the reply, wherever it runs (best effort: the stored request is the record)."""
    if not streams.enabled():
        return
    try:
        get_redis().publish(channel(reply_id), "stop")
    except Exception as exc:
        log.warning("stop announcement for reply %s failed (the attempt reads it from the row): %s", reply_id, exc)


def recorded(reply_id: int) -> bool:
    """Whether a stop of the reply is stored."""
    with db.engine.connect() as conn:
        return conn.scalar(select(Message.stop_requested_at).where(Message.id == reply_id)) is not None


class StopSignal:
    """Whether the user asked to stop one reply: heard at once through Redis, read from the row now and then.

    Open it before the attempt claims the reply: a stop stored after the claim read the row is then announced to a
    subscribed channel, so none falls between the two."""

    def __init__(self, reply_id: int) -> None:
        self.reply_id = reply_id
        self._watch: Watch | None = None
        if streams.enabled():
            try:
                self._watch = streams.listener().watch(channel(reply_id))
            except Exception as exc:  # Redis down: the row alone says it
                log.warning("stop signal for reply %s reads the row only: %s", reply_id, exc)
        self._interval = RECHECK_SECONDS if self._watch is not None else EMBEDDED_POLL_SECONDS
        self._checked = time.monotonic()
        self._stopped = False

    def __enter__(self) -> StopSignal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watch is not None:
            self._watch.close()

    def requested(self) -> bool:
        """Whether a stop was asked (costs nothing unless it is time to read the row)."""
        if self._stopped:
            return True
        message = self._watch.get(0) if self._watch is not None else None
        if message is not None and message != RESYNC:
            self._stopped = True
        elif message == RESYNC or time.monotonic() - self._checked >= self._interval:
            self._stopped = recorded(self.reply_id)
            self._checked = time.monotonic()
        return self._stopped
