"""Live reply chunks: one Redis Stream per reply, written by the worker, read by the SSE route and long-polls.

Each entry is appended and announced in one script run: XADD to the reply's stream (the record a client
resumes from with Last-Event-ID) and PUBLISH of the same entry on the reply's channel, which the one listener
of each web process follows for its local waiters (services.listener). A message names the entry before it,
so a waiter whose last entry is not that one knows it missed something and reads the stream instead.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from flask import current_app
from redis.commands.core import Script

from gemini_backend.extensions import get_redis, new_redis_client
from gemini_backend.services.listener import RESYNC, ReplyListener, Watch, listener_for

log = logging.getLogger(__name__)
KEEP_AFTER_END_SECONDS = 300
KEEP_WHILE_STREAMING_SECONDS = KEEP_AFTER_END_SECONDS * 4
MAX_ENTRIES = 5000
CATCH_UP_COUNT = 1000

# KEYS[1] the stream; ARGV: max length, expiry, channel, then the entry's field/value pairs. Published as the
# JSON array [previous entry id, entry id, field, value, ...]: a waiter gets the entry without reading the stream.
_APPEND_AND_ANNOUNCE = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local previous = '0-0'
if #last > 0 then previous = last[1][1] end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[2])
table.insert(fields, 1, id)
table.insert(fields, 1, previous)
redis.call('PUBLISH', ARGV[3], cjson.encode(fields))
return id
"""
Entry = tuple[str, dict[str, str]]  # (stream entry id, fields)


def stream_key(reply_id: int) -> str:
    """Redis key of a reply's chunk stream."""
    return f"gb:reply-stream:{reply_id}"


def channel(reply_id: int) -> str:
    """Pub/sub channel on which each of the reply's stream entries is announced as it is appended."""
    return f"gb:reply-events:{reply_id}"


def enabled() -> bool:
    """Streaming needs Redis (services mode)."""
    return bool(current_app.config["REDIS_URL"])


def listener() -> ReplyListener:
    """This process's one pub/sub reader for the app's Redis."""
    url = current_app.config["REDIS_URL"]
    return listener_for(url, lambda: new_redis_client(url))


def watch(reply_id: int) -> Watch:
    """Follow the reply's entries as they are announced (subscribed when this returns): close it when done."""
    return listener().watch(channel(reply_id))


def next_entries(watch: Watch, reply_id: int, cursor: str, timeout: float) -> list[Entry] | None:
    """The entries after cursor that the watch announces next, oldest first ([] when only a stale message came);
    None when nothing was announced within timeout.

    An announcement that does not follow cursor (a message lost in a reconnect, a late subscription) and a
    listener's RESYNC are answered from the stream itself, so nothing is missed or repeated.
    """
    message = watch.get(timeout)
    if message is None:
        return None
    if message != RESYNC:
        previous, entry = _announced(message)
        if previous == cursor:
            return [entry]
        if id_order(entry[0]) <= id_order(cursor):
            return []  # already read from the stream
    return entries_after(reply_id, cursor)


def _announced(message: str) -> tuple[str, Entry]:
    """An announcement as (the id of the entry before it, the entry)."""
    previous, entry_id, *flat = json.loads(message)
    return previous, (entry_id, dict(zip(flat[::2], flat[1::2])))


def may_announce_end(message: Any) -> bool:
    """Whether a watch's message may mean the reply ended: its end entry, or a RESYNC after a reconnect."""
    if message == RESYNC:
        return True
    _previous, (_entry_id, fields) = _announced(message)
    return fields.get("type") == "end"


def entries_after(reply_id: int, cursor: str) -> list[Entry]:
    """The stream's entries after cursor (an entry id), oldest first: what a waiter missed."""
    rows = get_redis().xrange(stream_key(reply_id), min=f"({cursor}", count=CATCH_UP_COUNT)
    return [(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}) for entry_id, fields in rows]


def stream_exists(reply_id: int) -> bool:
    """Whether the reply's stream is still kept (it expires a few minutes after the end, or went with Redis)."""
    return bool(get_redis().exists(stream_key(reply_id)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _append(reply_id: int, fields: dict[str, str], expire: int) -> None:
    """Append and announce one entry."""
    flat = [part for item in fields.items() for part in item]
    _append_script()(keys=[stream_key(reply_id)], args=[MAX_ENTRIES, expire, channel(reply_id), *flat])


def _append_script() -> Script:
    """The append-and-announce script, registered once per app (EVALSHA; loaded again after a Redis restart)."""
    script = current_app.extensions.get("append-script")
    if script is None:
        script = current_app.extensions["append-script"] = get_redis().register_script(_APPEND_AND_ANNOUNCE)
    return script


def _end_fields(status: str) -> dict[str, str]:
    """The entry that closes a reply's stream."""
    return {"type": "end", "status": status}


class AttemptStream:
    """One attempt's entries. Best effort, like all publishing: the stored reply row, not the stream, is the record;
    after a failed append the attempt stops publishing (later entries would arrive out of order) until its end."""

    def __init__(self, reply_id: int, attempt: int) -> None:
        self.reply_id = reply_id
        self.attempt = attempt
        self._enabled = enabled()
        self._broken = False

    def reset(self) -> None:
        """The attempt begins: clients drop any text of an earlier attempt."""
        self._send({"type": "reset", "attempt": str(self.attempt)})

    def delta(self, text: str) -> None:
        """One chunk of the attempt's text."""
        self._send({"type": "delta", "attempt": str(self.attempt), "text": text})

    def _send(self, fields: dict[str, str]) -> None:
        if not self._enabled or self._broken:
            return
        try:
            _append(self.reply_id, fields, KEEP_WHILE_STREAMING_SECONDS)
        except Exception as exc:
            log.warning("stream publish for reply %s failed: %s", self.reply_id, exc)
            self._broken = True


def publish_end(reply_id: int, status: str) -> None:
    """The reply is stored with its final status: end the stream (it expires a few minutes later) and wake
    everyone waiting on the reply (even after an attempt's broken delta)."""
    if not enabled():
        return
    try:
        _append(reply_id, _end_fields(status), KEEP_AFTER_END_SECONDS)
    except Exception as exc:
        log.warning("stream publish for reply %s failed: %s", reply_id, exc)


def id_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a sortable pair (ids compare as numbers, not strings)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
