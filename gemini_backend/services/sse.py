"""Server-Sent Events for one reply: live chunks from its Redis Stream, or the stored reply when finished.

Events: `delta` {"text"} with increasing ids, `reset` {"attempt"} when a retry restarts the text,
and a final `done` (complete or stopped) or `error` (failed/blocked) carrying the whole Message. A comment line
goes out every 15 s while waiting. Nothing here holds a database connection while it waits.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterator

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Row

from gemini_backend import metrics
from gemini_backend.extensions import db
from gemini_backend.models import Message
from gemini_backend.schemas.chat import MessageSchema
from gemini_backend.services import streams

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 15
EMBEDDED_POLL_SECONDS = 0.5
_message_schema = MessageSchema()


def event(name: str, data: Any, event_id: str | None = None) -> str:
    """One SSE event."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _closing_event(status: str) -> str:
    """The name of the event that ends a reply's stream: `done` for an answer (whole, or stopped by the user)."""
    return "done" if status in ("complete", "stopped") else "error"


# Ids of the stored reply sent whole: below every Redis Stream id, so they still sort first.
FINAL_DELTA_ID, FINAL_END_ID = "0-1", "0-2"


def _final_events(reply: Row, last_event_id: str | None) -> Iterator[str]:
    """The stored reply as one delta (unless the client has it) and its closing event."""
    body = _message_schema.dump(reply)
    if _closing_event(reply.status) == "done" and reply.content and last_event_id != FINAL_DELTA_ID:
        yield event("delta", {"text": reply.content}, FINAL_DELTA_ID)
    yield event(_closing_event(reply.status), body, FINAL_END_ID)


_LOAD_REPLY = select(Message.__table__).where(Message.__table__.c.id == bindparam("reply_id"))


def _load(reply_id: int) -> Row | None:
    """The reply as it is stored now (a row of the messages table), or None when it was deleted; the connection goes
    back at once, so the stream holds none while it waits."""
    with db.engine.connect() as conn:
        return conn.execute(_LOAD_REPLY, {"reply_id": reply_id}).first()


def reply_events(reply: Row, last_event_id: str | None) -> Iterator[str]:
    """The SSE stream of one reply (as the route loaded it, messages.find_reply), resuming after last_event_id."""
    with metrics.OPEN_STREAMS.track_inprogress():  # left when the client goes away too (GeneratorExit)
        # At once, so the client and any proxy get the headers before the first chunk (which may be seconds away).
        yield ": stream open\n\n"
        if not streams.enabled():
            yield from _embedded_events(reply.id, reply, last_event_id)
            return
        yield from _redis_events(reply.id, reply, last_event_id)


def _embedded_events(reply_id: int, reply: Row, last_event_id: str | None) -> Iterator[str]:
    """Without Redis: wait for the stored reply (polling, with heartbeats) and send it whole."""
    last_beat = time.monotonic()
    while reply is not None and reply.status == "pending":
        time.sleep(EMBEDDED_POLL_SECONDS)
        if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
            last_beat = time.monotonic()
            yield ": keep-alive\n\n"
        reply = _load(reply_id)
    if reply is not None:
        yield from _final_events(reply, last_event_id)


def _redis_events(reply_id: int, reply: Row, last_event_id: str | None) -> Iterator[str]:
    """Follow the reply's entries from last_event_id through the process's listener; finish with the stored reply.

    Watching costs this request no Redis connection while it waits; the stream itself is read only to catch up
    (at the start, after a missed announcement, on every heartbeat).
    """
    cursor = last_event_id if _is_stream_id(last_event_id) else "0-0"
    if reply.status != "pending" and (streams.id_order(cursor) <= streams.id_order(FINAL_END_ID)
                                      or not streams.stream_exists(reply_id)):
        yield from _final_events(reply, last_event_id)
        return
    with streams.watch(reply_id) as watch:
        entries = streams.entries_after(reply_id, cursor)  # what came before the watch began
        while True:
            for entry_id, fields in entries:
                cursor = entry_id
                kind = fields.get("type")
                if kind == "delta":
                    yield event("delta", {"text": fields.get("text", "")}, entry_id)
                elif kind == "reset" and int(fields.get("attempt", 1)) > 1:
                    yield event("reset", {"attempt": int(fields["attempt"])}, entry_id)
                elif kind == "end":
                    reply = _load(reply_id)
                    if reply is not None:
                        yield event(_closing_event(reply.status), _message_schema.dump(reply), entry_id)
                    return
            announced = streams.next_entries(watch, reply_id, cursor, HEARTBEAT_SECONDS)
            if announced is not None:
                entries = announced
                continue
            # Quiet for a heartbeat: anything an announcement missed is in the stream; else check the row.
            entries = streams.entries_after(reply_id, cursor)
            if entries:
                continue
            reply = _load(reply_id)
            if reply is None:
                return
            if reply.status != "pending" and not streams.stream_exists(reply_id):
                yield from _final_events(reply, last_event_id)  # the stream expired or was lost with Redis
                return
            yield ": keep-alive\n\n"


def _is_stream_id(value: str | None) -> bool:
    if not value:
        return False
    ms, _, seq = value.partition("-")
    return ms.isdigit() and seq.isdigit()


def stream_headers() -> dict[str, str]:
    """Headers that keep proxies from buffering or caching the stream."""
    return {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
