"""Live reply chunks: one Redis Stream per reply, written by the worker, read by the SSE route."""
from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from redis.connection import Connection, ConnectionPool

from gemini_backend.extensions import get_redis
from gemini_backend.services.notify import channel

log = logging.getLogger(__name__)
KEEP_AFTER_END_SECONDS = 300
KEEP_WHILE_STREAMING_SECONDS = KEEP_AFTER_END_SECONDS * 4
MAX_ENTRIES = 5000
DRAIN_AT = 200  # unread replies an attempt may leave in flight


def stream_key(reply_id: int) -> str:
    """Redis key of a reply's chunk stream."""
    return f"gb:reply-stream:{reply_id}"


def enabled() -> bool:
    """Streaming needs Redis (services mode)."""
    return bool(current_app.config["REDIS_URL"])


def _commands(reply_id: int, fields: dict[str, str], expire: int, announce: str | None,
              also: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    """Append one entry and refresh the stream's expiry; with announce, also wake the reply's waiters; with also,
    one more command for the same Redis (a cache drop) in the same send."""
    key = stream_key(reply_id)
    flat = [part for item in fields.items() for part in item]
    commands: list[tuple[Any, ...]] = [("XADD", key, "MAXLEN", "~", MAX_ENTRIES, "*", *flat),
                                       ("EXPIRE", key, expire)]
    if also is not None:
        commands.append(also)  # before the announcement: a woken waiter must find the cache dropped
    if announce is not None:
        commands.append(("PUBLISH", channel(reply_id), announce))
    return commands


def _end_fields(status: str) -> dict[str, str]:
    """The entry that closes a reply's stream."""
    return {"type": "end", "status": status}


class AttemptStream:
    """One attempt's entries on one Redis connection: each is sent at once and the replies are read later, so a
    chunk costs the worker a send instead of a round trip.

    Best effort, like all publishing: the stored reply row, not the stream, is the record.
    """

    def __init__(self, reply_id: int, attempt: int) -> None:
        self.reply_id = reply_id
        self.attempt = attempt
        self._enabled = enabled()
        self._broken = False
        self._pool: ConnectionPool | None = None
        self._conn: Connection | None = None
        self._unread = 0

    def __enter__(self) -> AttemptStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """The attempt begins: clients drop any text of an earlier attempt."""
        self._send({"type": "reset", "attempt": str(self.attempt)})

    def delta(self, text: str) -> None:
        """One chunk of the attempt's text."""
        self._send({"type": "delta", "attempt": str(self.attempt), "text": text})

    def end(self, status: str, also: tuple[Any, ...] | None = None) -> None:
        """The reply is stored with its final status: end the stream (kept a few minutes), wake its waiters;
        `also`: one more Redis command to send with it (a cache drop)."""
        if not self._broken:
            self._send(_end_fields(status), KEEP_AFTER_END_SECONDS, announce=status, also=also)
        if self._broken:  # before or by this send: on a new connection, clients must learn of the end
            publish_end(self.reply_id, status, also)
        self.close()

    def close(self) -> None:
        """Read the replies still unread, so the connection goes back to the pool clean."""
        if self._conn is not None:
            self._drain()
        if self._conn is not None:
            self._release()

    def _send(self, fields: dict[str, str], expire: int = KEEP_WHILE_STREAMING_SECONDS,
              announce: str | None = None, also: tuple[Any, ...] | None = None) -> None:
        """Send one entry's commands without waiting for their replies."""
        if not self._enabled or self._broken:
            return
        commands = _commands(self.reply_id, fields, expire, announce, also)
        try:
            if self._conn is None:
                self._pool = get_redis().connection_pool
                self._conn = self._pool.get_connection()
            # A health check would read a reply of its own, so only a connection with nothing unread gets one.
            self._conn.send_packed_command(self._conn.pack_commands(commands), check_health=not self._unread)
            self._unread += len(commands)
        except Exception as exc:
            self._fail(exc)
            return
        if self._unread >= DRAIN_AT:  # a long answer must not pile its replies up in Redis' output buffer
            self._drain()

    def _drain(self) -> None:
        """Read every reply still unread."""
        try:
            while self._unread:
                self._conn.read_response()  # type: ignore[union-attr]
                self._unread -= 1
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """Stop publishing this attempt (later entries would arrive out of order) and drop the connection."""
        log.warning("stream publish for reply %s failed: %s", self.reply_id, exc)
        self._broken = True
        if self._conn is not None:
            self._conn.disconnect()  # replies may be left unread: it must not be reused as it is
            self._release()

    def _release(self) -> None:
        """Give the connection back to the pool."""
        conn, self._conn, self._unread = self._conn, None, 0
        self._pool.release(conn)  # type: ignore[union-attr]


def _publish(reply_id: int, fields: dict[str, str], expire: int = KEEP_WHILE_STREAMING_SECONDS,
             announce: str | None = None, also: tuple[Any, ...] | None = None) -> None:
    """One entry (and announcement) in one round trip, outside an attempt."""
    if not enabled():
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        for command in _commands(reply_id, fields, expire, announce, also):
            pipe.execute_command(*command)
        pipe.execute()
    except Exception as exc:
        log.warning("stream publish for reply %s failed: %s", reply_id, exc)


def publish_end(reply_id: int, status: str, also: tuple[Any, ...] | None = None) -> None:
    """The reply is stored with its final status: end the stream (it expires a few minutes later) and wake
    everyone waiting on the reply (notify.wait_for_reply); `also`: one more command to send with it."""
    _publish(reply_id, _end_fields(status), KEEP_AFTER_END_SECONDS, announce=status, also=also)
