"""Posting messages: quota, one transaction for the message and its pending reply, idempotency, enqueue."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, insert, literal, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.exc import IntegrityError

from gemini_backend.caching import drop_chatroom_list
from gemini_backend.errors import AppError, Conflict, NotFound
from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, IdempotencyKey, Message, utcnow
from gemini_backend.schemas.chat import MessageSchema
from gemini_backend.services import quota
from gemini_backend.services.chat import get_room
from gemini_backend.services.notify import wait_for_reply
from gemini_backend.services.replies import enqueue_reply
from gemini_backend.services.tokens import user_state

_message_schema = MessageSchema()
IDEMPOTENCY_WINDOW = timedelta(hours=24)


def dump_message(message: Any) -> dict[str, Any]:
    """A Message (an ORM object or a row of the messages table) as its JSON-ready dict."""
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
            rows = _insert_exchange(conn, user_id, room_id, content, quota.day_of(now), now)
            if rows is None:
                raise NotFound("No such chatroom.", error="chatroom_not_found")
            ticket = quota.reserve_message(user_id, tier, at=now)
            body = {"message": dump_message(rows[0]), "reply": dump_message(rows[1])}
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
    drop_chatroom_list(user_id)
    enqueue_reply(body["reply"]["id"])
    return body, ticket.usage


# The post's statements, built once; bind parameters carry each post's values. Plain statements (no server-side
# PREPARE, no session state), so the post works through a transaction-mode pooler (PgBouncer) as on a direct
# connection.
_rooms, _messages = Chatroom.__table__, Message.__table__
_NOW = bindparam("now", type_=_messages.c.created_at.type)
_TOUCH_ROOM = (
    update(_rooms).where(_rooms.c.id == bindparam("room_id"), _rooms.c.user_id == bindparam("owner_id"))
    .values(message_count=_rooms.c.message_count + 2, last_message_at=_NOW, last_activity_at=_NOW, updated_at=_NOW)
)
# The two rows a post inserts, as column -> value (a bind parameter, or a constant).
_USER_MESSAGE = {"chatroom_id": bindparam("room_id"), "role": "user", "content": bindparam("text"),
                 "status": "complete", "attempts": 0, "quota_day": bindparam("day"), "created_at": _NOW,
                 "completed_at": _NOW}
_PENDING_REPLY = {"chatroom_id": bindparam("room_id"), "role": "model", "content": "", "status": "pending",
                  "attempts": 0, "reply_to": bindparam("message_id"), "created_at": _NOW}
_INSERT_MESSAGE = insert(_messages).values(_USER_MESSAGE).returning(_messages)
_INSERT_REPLY = insert(_messages).values(_PENDING_REPLY).returning(_messages)


def _selected(row: dict[str, Any], **from_cte: Any) -> Select:
    """A row's values as the SELECT of an INSERT ... SELECT, taking the columns in from_cte from an earlier CTE."""
    def value(name: str, given: Any) -> Any:
        if name in from_cte:
            return from_cte[name]
        type_ = _messages.c[name].type
        return bindparam(given.key, type_=type_) if isinstance(given, BindParameter) else literal(given, type_)
    return select(*[value(name, given) for name, given in row.items()])


# PostgreSQL: the three in one statement (data-modifying CTEs). Measured with `make bench` (POST at 32
# connections, against the floor of the same run): three statements 0.18 x, this one 0.26 x; the guard of
# QUALITY.md is 0.25 x. A post that is not the user's room touches no room, so inserts nothing and returns no row.
_room = _TOUCH_ROOM.returning(_rooms.c.id).cte("room")
_message = insert(_messages).from_select(
    list(_USER_MESSAGE), _selected(_USER_MESSAGE, chatroom_id=_room.c.id)).returning(_messages).cte("message")
_reply = insert(_messages).from_select(
    list(_PENDING_REPLY), _selected(_PENDING_REPLY, chatroom_id=_message.c.chatroom_id, reply_to=_message.c.id),
).returning(_messages).cte("reply")
_COLUMNS = [column.name for column in _messages.c]
_INSERT_EXCHANGE = select(*[_message.c[name].label(f"message_{name}") for name in _COLUMNS],
                          *[_reply.c[name].label(f"reply_{name}") for name in _COLUMNS]).select_from(
    _message.join(_reply, _reply.c.reply_to == _message.c.id))


def _insert_exchange(conn: Connection, user_id: int, room_id: int, content: str, quota_day: str,
                     now: datetime) -> tuple[Any, Any] | None:
    """In the post's transaction: count the room's two new messages and insert the user message and its pending
    reply; (message row, reply row), or None when the user has no such room."""
    params = {"owner_id": user_id, "room_id": room_id, "text": content, "day": quota_day, "now": now}
    if conn.dialect.name == "postgresql":
        row = conn.execute(_INSERT_EXCHANGE, params).first()
        if row is None:
            return None
        fields = row._mapping
        return tuple({name: fields[f"{which}_{name}"] for name in _COLUMNS} for which in ("message", "reply"))
    if conn.execute(_TOUCH_ROOM, params).rowcount != 1:
        return None
    message = conn.execute(_INSERT_MESSAGE, params).one()
    reply = conn.execute(_INSERT_REPLY, {**params, "message_id": message.id}).one()
    return message, reply


def _replay(user_id: int, key: str, request_hash: str) -> dict | None:
    """The first response stored for this key, as it was sent (the route's ?wait reloads a reply still pending
    in it), or None."""
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


def find_reply(user_id: int, room_id: int, message_id: int) -> Message:
    """The reply of a message of the user's room (the message itself when it is a reply), in one query; 404
    otherwise."""
    reply = db.session.scalars(
        select(Message).join(Chatroom, Chatroom.id == Message.chatroom_id)
        .where(Chatroom.id == room_id, Chatroom.user_id == user_id, Message.role == "model",
               or_(Message.id == message_id, Message.reply_to == message_id))).first()
    if reply is None:
        get_message(user_id, room_id, message_id)  # the room's or the message's own 404
        raise NotFound("This message has no reply.", error="message_not_found")
    return reply


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
    ).values(status="pending", error=None, content="", usage=None, feedback=None, attempts=0, completed_at=None,
             lease_token=None, lease_expires_at=None, created_at=reply.created_at)).rowcount
    db.session.commit()
    if restarted != 1:
        raise AppError("The reply is already being retried.", status=409, error="not_retryable")
    drop_chatroom_list(user_id)
    enqueue_reply(reply.id)
    db.session.refresh(reply)
    return reply


def rate_reply(user_id: int, room_id: int, message_id: int, rating: str | None, comment: str | None) -> Message:
    """Record the user's feedback on a reply (a later call replaces it; no rating and no comment clears it)."""
    message = get_message(user_id, room_id, message_id)
    if message.role != "model":
        raise AppError("Only a reply takes feedback.", status=409, error="not_a_reply")
    comment = (comment or "").strip() or None
    message.feedback = None if rating is None and comment is None else {
        "rating": rating, "comment": comment, "updated_at": utcnow().isoformat()}
    db.session.commit()
    return message


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
