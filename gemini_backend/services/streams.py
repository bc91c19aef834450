"""Live reply chunks: one Redis Stream per reply, written by the worker, read by the SSE route."""
from __future__ import annotations

import logging
from typing import Any

from flask import current_app

from gemini_backend.extensions import get_redis

log = logging.getLogger(__name__)
KEEP_AFTER_END_SECONDS = 300
MAX_ENTRIES = 5000


def stream_key(reply_id: int) -> str:
    """Redis key of a reply's chunk stream."""
    return f"gb:reply-stream:{reply_id}"


def enabled() -> bool:
    """Streaming needs Redis (services mode)."""
    return bool(current_app.config["REDIS_URL"])


def _add(reply_id: int, fields: dict[str, Any], expire: int | None = None) -> None:
    # Publishing is best effort: the stored reply row, not the stream, is the record.
    if not enabled():
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        key = stream_key(reply_id)
        pipe.xadd(key, {k: str(v) for k, v in fields.items()}, maxlen=MAX_ENTRIES, approximate=True)
        pipe.expire(key, expire or KEEP_AFTER_END_SECONDS * 4)
        pipe.execute()
    except Exception as exc:
        log.warning("stream publish for reply %s failed: %s", reply_id, exc)


def publish_start(reply_id: int, attempt: int) -> None:
    """A new attempt begins: clients drop any text of an earlier attempt."""
    _add(reply_id, {"type": "reset", "attempt": attempt})


def publish_delta(reply_id: int, attempt: int, text: str) -> None:
    """One chunk of the attempt's text."""
    _add(reply_id, {"type": "delta", "attempt": attempt, "text": text})


def publish_end(reply_id: int, status: str) -> None:
    """The reply is stored with its final status; the stream expires a few minutes later."""
    _add(reply_id, {"type": "end", "status": status}, expire=KEEP_AFTER_END_SECONDS)
