"""Posting messages: quota, one transaction for the message and its pending reply, idempotency, enqueue."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import Boolean, Select, bindparam, case, insert, literal, or_, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.exc import IntegrityError

from gemini_backend.caching import drop_chatroom_list
from gemini_backend.errors import AppError, Conflict, InvalidField, NotFound
from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, IdempotencyKey, Message, MessageAttachment, utcnow
from gemini_backend.schemas.chat import MessageSchema
from gemini_backend.services import files, quota
from gemini_backend.services.chat import get_room
from gemini_backend.services.notify import wait_for_reply
from gemini_backend.services.replies import enqueue_reply, request_stop
from gemini_backend.services.tokens import user_state

_message_schema = MessageSchema()
IDEMPOTENCY_WINDOW = timedelta(hours=24)


def dump_message(message: Any) -> dict[str, Any]:
    """A Message (an ORM object or a row of the messages table) as its JSON-ready dict."""
    return _message_schema.dump(message)


ACTIVE_LEAF = object()  # a post's parent when none is given: the room's active leaf


def post_message(user_id: int, room_id: int, content: str, idempotency_key: str | None,
                 parent_id: int | None | object = ACTIVE_LEAF,
                 attachment_ids: Sequence[int] = ()) -> tuple[dict, dict]:
    """Store the user's message under parent_id (a reply of the room, None for the top, or the active leaf), with
    the user's files attachment_ids and a pending reply, which becomes the active leaf; enqueue the reply;
    ({message, reply}, usage after it)."""
    tier = user_state(user_id)["tier"]
    request = f"{room_id}\n{content}" if parent_id is ACTIVE_LEAF else f"{room_id}\n{content}\nparent={parent_id}"
    if attachment_ids:
        request += "\nfiles=" + ",".join(map(str, attachment_ids))
    request_hash = hashlib.sha256(request.encode()).hexdigest()
    if parent_id is not ACTIVE_LEAF:
        _check_parent(user_id, room_id, parent_id)
    if idempotency_key or attachment_ids:
        # A replay of a deleted or foreign room is a 404 like any other request; so is a foreign room whatever the
        # files.
        get_room(user_id, room_id)
    # 422 before anything is stored or counted; the metadata is the response's.
    attached = files.attachable(user_id, attachment_ids) if attachment_ids else []
    if idempotency_key:
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
            # The room row comes first (locked): it proves ownership (404 before any quota is used), and its lock
            # is held while the quota is taken, so a refused post leaves nothing behind when it rolls back.
            rows = _insert_exchange(conn, user_id, room_id, content, parent_id, quota.day_of(now), now,
                                    attachment_ids)
            if rows is None:
                raise NotFound("No such chatroom.", error="chatroom_not_found")
            ticket = quota.reserve_message(user_id, tier, at=now)
            body = {"message": dump_message(rows[0]), "reply": dump_message(rows[1])}
            if attached:  # the metadata read by the check above: the response reads nothing back
                body["message"]["attachments"] = attached
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


def _check_parent(user_id: int, room_id: int, parent_id: int | None) -> None:
    """A post's explicit parent is a reply of the user's room, or None (the top): 404 for another's room, 422
    otherwise."""
    room = get_room(user_id, room_id)
    role = None if parent_id is None else db.session.scalar(
        select(Message.role).where(Message.id == parent_id, Message.chatroom_id == room.id))
    db.session.commit()
    if parent_id is not None and role != "model":
        problem = "Must be a reply of this chatroom (or null for the first message)."
        raise InvalidField("parent_id", problem)


# The post's statements, built once; bind parameters carry each post's values. Plain statements (no server-side
# PREPARE, no session state), so the post works through a transaction-mode pooler (PgBouncer) as on a direct
# connection.
_rooms, _messages = Chatroom.__table__, Message.__table__
_NOW = bindparam("now", type_=_messages.c.created_at.type)
_ROOM_ACTIVITY = {"last_message_at": _NOW, "last_activity_at": _NOW, "updated_at": _NOW}
_TOUCH_ROOM = (
    update(_rooms).where(_rooms.c.id == bindparam("room_id"), _rooms.c.user_id == bindparam("owner_id"))
    .values(message_count=_rooms.c.message_count + bindparam("added"), **_ROOM_ACTIVITY)
    .returning(_rooms.c.active_leaf_id)
)
_SET_ACTIVE_LEAF = update(_rooms).where(_rooms.c.id == bindparam("room_id")).values(
    active_leaf_id=bindparam("leaf_id"))
# The two rows a post inserts, as column -> value (a bind parameter, or a constant). A regeneration inserts the
# second alone.
_USER_MESSAGE = {"chatroom_id": bindparam("room_id"), "role": "user", "content": bindparam("text"),
                 "status": "complete", "attempts": 0, "parent_id": bindparam("parent_id"), "created_at": _NOW,
                 "completed_at": _NOW}
_PENDING_REPLY = {"chatroom_id": bindparam("room_id"), "role": "model", "content": "", "status": "pending",
                  "attempts": 0, "reply_to": bindparam("message_id"), "parent_id": bindparam("message_id"),
                  "quota_day": bindparam("day"), "created_at": _NOW}
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


# PostgreSQL: the whole post in one statement (data-modifying CTEs). Measured with `make bench` (POST at 32
# connections, against the floor of the same run): three statements 0.18 x, one 0.26 x; the guard of QUALITY.md
# is 0.25 x. The room row is locked first (FOR UPDATE), so concurrent posts to a room take turns: each reads the
# active leaf the one before set. A post that is not the user's room locks no room, so inserts nothing and returns
# no row.
_room = (select(_rooms.c.id, _rooms.c.active_leaf_id)
         .where(_rooms.c.id == bindparam("room_id"), _rooms.c.user_id == bindparam("owner_id"))
         .with_for_update().cte("room"))
_parent = case((bindparam("follow_leaf", type_=Boolean), _room.c.active_leaf_id),
               else_=bindparam("parent_id", type_=_messages.c.parent_id.type))
_message = insert(_messages).from_select(
    list(_USER_MESSAGE), _selected(_USER_MESSAGE, chatroom_id=_room.c.id, parent_id=_parent),
).returning(_messages).cte("message")
_reply = insert(_messages).from_select(
    list(_PENDING_REPLY), _selected(_PENDING_REPLY, chatroom_id=_message.c.chatroom_id, reply_to=_message.c.id,
                                    parent_id=_message.c.id),
).returning(_messages).cte("reply")
_touched = (update(_rooms).where(_rooms.c.id == _reply.c.chatroom_id)
            .values(message_count=_rooms.c.message_count + 2, active_leaf_id=_reply.c.id, **_ROOM_ACTIVITY)
            .returning(_rooms.c.id).cte("touched"))
_COLUMNS = [column.name for column in _messages.c]
_INSERT_EXCHANGE = select(*[_message.c[name].label(f"message_{name}") for name in _COLUMNS],
                          *[_reply.c[name].label(f"reply_{name}") for name in _COLUMNS]).select_from(
    _message.join(_reply, _reply.c.reply_to == _message.c.id).join(_touched, _touched.c.id == _reply.c.chatroom_id))


def _insert_exchange(conn: Connection, user_id: int, room_id: int, content: str, parent_id: int | None | object,
                     quota_day: str, now: datetime, attachment_ids: Sequence[int] = ()) -> tuple[Any, Any] | None:
    """In the post's transaction: insert the user message (with its files) and its pending reply, count them in the
    room and make the reply its active leaf; (message row, reply row), or None when the user has no such room."""
    follow_leaf = parent_id is ACTIVE_LEAF
    params = {"owner_id": user_id, "room_id": room_id, "text": content, "day": quota_day, "now": now,
              "follow_leaf": follow_leaf, "parent_id": None if follow_leaf else parent_id, "added": 2}
    if conn.dialect.name == "postgresql":
        row = conn.execute(_INSERT_EXCHANGE, params).first()
        if row is None:
            return None
        fields = row._mapping
        message, reply = ({name: fields[f"{which}_{name}"] for name in _COLUMNS} for which in ("message", "reply"))
        _attach(conn, message["id"], attachment_ids)
        return message, reply
    room = conn.execute(_TOUCH_ROOM, params).first()
    if room is None:
        return None
    if follow_leaf:
        params["parent_id"] = room.active_leaf_id
    message = conn.execute(_INSERT_MESSAGE, params).one()
    _attach(conn, message.id, attachment_ids)
    reply = conn.execute(_INSERT_REPLY, {**params, "message_id": message.id}).one()
    conn.execute(_SET_ACTIVE_LEAF, {"room_id": room_id, "leaf_id": reply.id})
    return message, reply


_INSERT_ATTACHMENT = insert(MessageAttachment.__table__)


def _attach(conn: Connection, message_id: int, file_ids: Sequence[int]) -> None:
    """Record a message's files, in the order given: a statement of its own, only for a post with files."""
    if not file_ids:
        return
    try:
        conn.execute(_INSERT_ATTACHMENT, [{"message_id": message_id, "file_id": file_id, "position": position}
                                          for position, file_id in enumerate(file_ids)])
    except IntegrityError:  # the file was deleted since the check (its foreign key): the post rolls back
        problem = "A file was deleted meanwhile."
        raise InvalidField("attachment_ids", problem) from None


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
    if message.role == "user":
        files.with_attachments([message])
    return message


def find_reply(user_id: int, room_id: int, message_id: int) -> Row:
    """The reply of a message of the user's room (the message itself when it is a reply; the newest of a user
    message's replies), as a row of the messages table read in one query on a connection of its own; 404
    otherwise."""
    with db.engine.connect() as conn:  # Core: the callers only read the row, and a session costs more CPU
        reply = conn.execute(_FIND_REPLY, {"user_id": user_id, "room_id": room_id, "message_id": message_id}).first()
    if reply is None:
        get_message(user_id, room_id, message_id)  # the room's or the message's own 404
        raise NotFound("This message has no reply.", error="message_not_found")
    return reply


_FIND_REPLY = (
    select(_messages).join(_rooms, _rooms.c.id == _messages.c.chatroom_id)
    .where(_rooms.c.id == bindparam("room_id"), _rooms.c.user_id == bindparam("user_id"), _messages.c.role == "model",
           or_(_messages.c.id == bindparam("message_id"), _messages.c.reply_to == bindparam("message_id")))
    .order_by(_messages.c.id.desc()).limit(1)
)


def reply_for(message: Message) -> Message | None:
    """The newest reply of a user message (or the message itself when it is a reply)."""
    if message.role == "model":
        return message
    return db.session.scalars(select(Message).where(Message.reply_to == message.id)
                              .order_by(Message.id.desc())).first()


def retry_reply(user_id: int, room_id: int, message_id: int) -> Message:
    """Start a new attempt for a failed or blocked reply (no quota used)."""
    reply = reply_for(get_message(user_id, room_id, message_id))
    if reply is None or reply.status not in ("failed", "blocked"):
        raise AppError("Only a failed or blocked reply can be retried.", status=409, error="not_retryable")
    restarted = db.session.execute(update(Message).where(
        Message.id == reply.id, Message.status.in_(("failed", "blocked"))
    ).values(status="pending", error=None, content="", usage=None, feedback=None, attempts=0, completed_at=None,
             lease_token=None, lease_expires_at=None, created_at=reply.created_at)).rowcount
    try:
        db.session.commit()
    except IntegrityError:  # the one-pending-reply index: a regenerated sibling is being written
        db.session.rollback()
        raise AppError("Another reply to this message is being written; stop it or wait for it first.",
                       status=409, error="reply_in_progress") from None
    if restarted != 1:
        raise AppError("The reply is already being retried.", status=409, error="not_retryable")
    drop_chatroom_list(user_id)
    enqueue_reply(reply.id)
    db.session.refresh(reply)
    return reply


def regenerate_reply(user_id: int, room_id: int, message_id: int) -> tuple[Any, dict]:
    """A new pending reply to a user message (given itself or one of its replies), beside the earlier ones; it
    becomes the active leaf and uses a quota unit. 409 while one of the message's replies is still pending."""
    tier = user_state(user_id)["tier"]
    message = get_message(user_id, room_id, message_id)
    question_id = message.reply_to if message.role == "model" else message.id
    db.session.commit()  # the write below runs on a connection of its own
    now = utcnow()
    params = {"owner_id": user_id, "room_id": room_id, "message_id": question_id, "day": quota.day_of(now),
              "now": now, "added": 1}
    ticket = None
    try:
        with db.engine.begin() as conn:
            # The room first, as a post does: posts and regenerations of a room take turns on its row.
            if conn.execute(_TOUCH_ROOM, params).first() is None:
                raise NotFound("No such chatroom.", error="chatroom_not_found")
            reply = conn.execute(_INSERT_REPLY, params).one()  # the one-pending-reply index refuses a second
            ticket = quota.reserve_message(user_id, tier, at=now)
            conn.execute(_SET_ACTIVE_LEAF, {"room_id": room_id, "leaf_id": reply.id})
    except IntegrityError:
        raise AppError("This message's reply is still being written; stop it or wait for it first.", status=409,
                       error="reply_in_progress") from None
    except BaseException:
        if ticket is not None:
            quota.refund(ticket)
        raise
    drop_chatroom_list(user_id)
    enqueue_reply(reply.id)
    return reply, ticket.usage


STOP_WAIT_SECONDS = 5.0  # how long a stop waits for the running attempt to end the reply before answering 202


def stop_reply(user_id: int, room_id: int, message_id: int) -> Message:
    """Stop a pending reply (or a user message's newest reply): it ends `stopped` with the text so far, at once
    when no attempt runs it, else at the attempt's next chunk; the reply as it is after up to STOP_WAIT_SECONDS.
    409 when it already ended."""
    reply = find_reply(user_id, room_id, message_id)
    if reply.status != "pending":
        raise AppError("This reply has already ended.", status=409, error="not_stoppable")
    request_stop(reply.id)
    return wait_until_finished(reply.id, STOP_WAIT_SECONDS)


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
