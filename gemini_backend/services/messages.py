"""Posting messages: quota, one transaction for the message and its pending reply, idempotency, enqueue."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gemini_backend.caching import drop_chatroom_list, drop_chatroom_list_command
from gemini_backend.errors import AppError, Conflict, NotFound
from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, IdempotencyKey, Message, utcnow
from gemini_backend.schemas.chat import MessageSchema
from gemini_backend.services import quota
from gemini_backend.services.chat import get_room
from gemini_backend.services.notify import wait_for_reply
from gemini_backend.services.tokens import user_state
from gemini_backend.tasks import enqueue_reply

_message_schema = MessageSchema()
IDEMPOTENCY_WINDOW = timedelta(hours=24)


def dump_message(message: Message) -> dict[str, Any]:
    """A Message as its JSON-ready dict."""
    return _message_schema.dump(message)


def post_message(user_id: int, room_id: int, content: str, idempotency_key: str | None) -> tuple[dict, dict]:
    """Store the user's message and a pending reply, enqueue the reply; ({message, reply}, usage after it)."""
    tier = user_state(user_id)["tier"]
    request_hash = hashlib.sha256(f"{room_id}\n{content}".encode()).hexdigest()
    if idempotency_key:
        get_room(user_id, room_id)  # a replay of a deleted or foreign room is a 404 like any other request
        replay = _replay(user_id, idempotency_key, request_hash)
        if replay is not None:
            return replay, quota.usage(user_id, tier)
        db.session.commit()  # the write below runs on a connection of its own: hand this one back first
    now = utcnow()
    ticket = None
    try:
        # A Core connection, not the ORM session: the post reads no objects, and a session's set-up and
        # bookkeeping cost more CPU than the statement itself.
        with db.engine.begin() as conn:
            # The room update comes first: it proves ownership (404 before any quota is used), and its row lock
            # is held while the quota is taken, so a refused post leaves nothing behind when it rolls back.
            ids = _insert_exchange(conn, user_id, room_id, content, quota.day_of(now), now)
            if ids is None:
                raise NotFound("No such chatroom.", error="chatroom_not_found")
            ticket = quota.reserve_message(user_id, tier, at=now)
            body = _exchange_body(room_id, content, now, *ids)
            if idempotency_key:
                conn.execute(insert(IdempotencyKey.__table__).values(
                    user_id=user_id, key=idempotency_key, request_hash=request_hash, response_status=202,
                    response_body=body, created_at=now))
    except IntegrityError:
        if ticket is not None:
            quota.refund(ticket)
        # Another request with the same Idempotency-Key won the race: answer with its response.
        replay = _replay(user_id, idempotency_key, request_hash) if idempotency_key else None
        if replay is None:
            raise
        return replay, quota.usage(user_id, tier)
    except BaseException:
        if ticket is not None:
            quota.refund(ticket)
        raise
    _announce(user_id, body["reply"]["id"])
    return body, ticket.usage


def _announce(user_id: int, reply_id: int) -> None:
    """After the post's commit: drop the user's cached room list and queue the reply, in one Redis round trip
    when the cache and the queue share a Redis."""
    command = drop_chatroom_list_command(user_id)
    if command is None:
        drop_chatroom_list(user_id)
    enqueue_reply(reply_id, along=command)


# PostgreSQL does the room update and both inserts in one round trip (data-modifying CTEs), as a prepared
# statement: the hottest write then costs one EXECUTE, which PostgreSQL neither parses nor plans again, and the
# commit.
_EXCHANGE_PG = """
WITH room AS (
    UPDATE chatrooms SET message_count = message_count + 2, last_message_at = $5, last_activity_at = $5,
                         updated_at = $5
    WHERE id = $2 AND user_id = $1
    RETURNING id
), message AS (
    INSERT INTO messages (chatroom_id, role, content, status, attempts, quota_day, created_at, completed_at)
    SELECT id, 'user', $3, 'complete', 0, $4, $5, $5 FROM room
    RETURNING id, chatroom_id
), reply AS (
    INSERT INTO messages (chatroom_id, role, content, status, attempts, reply_to, created_at)
    SELECT chatroom_id, 'model', '', 'pending', 0, id, $5 FROM message
    RETURNING id, reply_to
)
SELECT reply_to, id FROM reply
"""
_PREPARE_EXCHANGE_PG = f"PREPARE gb_insert_exchange (bigint, bigint, text, varchar, timestamptz) AS {_EXCHANGE_PG}"
_EXECUTE_EXCHANGE_PG = ("EXECUTE gb_insert_exchange (%(user_id)s, %(room_id)s, %(content)s, %(quota_day)s, "
                        "%(now)s)")


def _execute_exchange_pg(conn: Connection, params: dict[str, Any]) -> Any:
    """Run the prepared exchange statement, preparing it first on a connection that has not seen it yet."""
    # Connection.info lives as long as the database connection, as does a prepared statement; PREPARE is not
    # undone by a rollback, so the flag cannot outlive the statement.
    if not conn.info.get("gb_insert_exchange"):
        conn.exec_driver_sql(_PREPARE_EXCHANGE_PG)
        conn.info["gb_insert_exchange"] = True
    return conn.exec_driver_sql(_EXECUTE_EXCHANGE_PG, params).first()


def _insert_exchange(conn: Connection, user_id: int, room_id: int, content: str, quota_day: str,
                     now: datetime) -> tuple[int, int] | None:
    """In the post's transaction: count the room's two new messages and insert the user message and its pending
    reply; (message id, reply id), or None when the user has no such room."""
    params = {"user_id": user_id, "room_id": room_id, "content": content, "quota_day": quota_day, "now": now}
    if conn.dialect.name == "postgresql":
        row = _execute_exchange_pg(conn, params)
        return (row[0], row[1]) if row else None
    rooms, messages = Chatroom.__table__, Message.__table__
    touched = conn.execute(update(rooms).where(rooms.c.id == room_id, rooms.c.user_id == user_id).values(
        message_count=rooms.c.message_count + 2, last_message_at=now, last_activity_at=now, updated_at=now))
    if touched.rowcount != 1:
        return None
    message_id = conn.execute(insert(messages).values(
        chatroom_id=room_id, role="user", content=content, status="complete", attempts=0, quota_day=quota_day,
        created_at=now, completed_at=now).returning(messages.c.id)).scalar_one()
    reply_id = conn.execute(insert(messages).values(
        chatroom_id=room_id, role="model", content="", status="pending", attempts=0, reply_to=message_id,
        created_at=now).returning(messages.c.id)).scalar_one()
    return message_id, reply_id


def _exchange_body(room_id: int, content: str, now: datetime, message_id: int, reply_id: int) -> dict:
    """The 202 body {message, reply} of a fresh post, built from the values just inserted (MessageSchema's
    fields, written out: the schema's dump costs more than the rest of the body)."""
    at = now.isoformat()
    common = {"chatroom_id": room_id, "error": None, "created_at": at}
    return {"message": {**common, "id": message_id, "role": "user", "content": content, "status": "complete",
                        "reply_to": None, "completed_at": at},
            "reply": {**common, "id": reply_id, "role": "model", "content": "", "status": "pending",
                      "reply_to": message_id, "completed_at": None}}


def _replay(user_id: int, key: str, request_hash: str) -> dict | None:
    """The stored first response for this key (with the reply's current state), or None."""
    record = db.session.scalars(select(IdempotencyKey).where(
        IdempotencyKey.user_id == user_id, IdempotencyKey.key == key,
        IdempotencyKey.created_at > utcnow() - IDEMPOTENCY_WINDOW)).first()
    if record is None:
        return None
    if record.request_hash != request_hash:
        raise Conflict("This Idempotency-Key was already used for a different request.",
                       error="idempotency_key_reused")
    return dict(record.response_body)


def get_message(user_id: int, room_id: int, message_id: int) -> Message:
    """One message of the user's room; 404 otherwise."""
    room = get_room(user_id, room_id)
    message = db.session.scalars(select(Message).where(Message.id == message_id,
                                                       Message.chatroom_id == room.id)).first()
    if message is None:
        raise NotFound("No such message.", error="message_not_found")
    return message


def reply_for(message: Message) -> Message | None:
    """The reply row of a user message (or the message itself when it is a reply)."""
    if message.role == "model":
        return message
    return db.session.scalars(select(Message).where(Message.reply_to == message.id)).first()


def retry_reply(user_id: int, room_id: int, message_id: int) -> Message:
    """Start a new attempt for a failed or blocked reply (no quota used)."""
    reply = reply_for(get_message(user_id, room_id, message_id))
    if reply is None or reply.status not in ("failed", "blocked"):
        raise AppError("Only a failed or blocked reply can be retried.", status=409, error="not_retryable")
    restarted = db.session.execute(update(Message).where(
        Message.id == reply.id, Message.status.in_(("failed", "blocked"))
    ).values(status="pending", error=None, content="", attempts=0, completed_at=None, lease_token=None,
             lease_expires_at=None, created_at=reply.created_at)).rowcount
    db.session.commit()
    if restarted != 1:
        raise AppError("The reply is already being retried.", status=409, error="not_retryable")
    drop_chatroom_list(user_id)
    enqueue_reply(reply.id)
    db.session.refresh(reply)
    return reply


def wait_until_finished(reply_id: int, timeout: float) -> Message:
    """Wait up to timeout for the reply to leave `pending` (holding no database connection), then reload it."""
    def finished() -> bool:
        status = db.session.scalar(select(Message.status).where(Message.id == reply_id))
        db.session.commit()  # hands the connection back to the pool between checks
        return status != "pending"

    db.session.commit()
    if timeout > 0:
        wait_for_reply(reply_id, timeout, finished)
    reply = db.session.get(Message, reply_id, populate_existing=True)
    if reply is None:  # the room was deleted while we waited
        raise NotFound("No such message.", error="message_not_found")
    return reply
