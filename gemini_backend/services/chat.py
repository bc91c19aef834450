"""Chatrooms: create, list (cached per user), read with messages, rename, delete."""
from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import delete, select

from gemini_backend.caching import cached_chatroom_list, drop_chatroom_list
from gemini_backend.errors import NotFound
from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, Message, utcnow
from gemini_backend.schemas.chat import ChatroomSchema

_room_schema = ChatroomSchema()


def create_room(user_id: int, name: str) -> Chatroom:
    """A new room for the user."""
    now = utcnow()
    room = Chatroom(user_id=user_id, name=name.strip(), created_at=now, updated_at=now, last_activity_at=now)
    db.session.add(room)
    db.session.commit()
    drop_chatroom_list(user_id)
    return room


def list_rooms(user_id: int) -> tuple[bytes, bool]:
    """The user's rooms, newest activity first, as the encoded `{"chatrooms": [...]}` body; True on a cache hit."""
    def render() -> bytes:
        rooms = db.session.scalars(select(Chatroom).where(Chatroom.user_id == user_id)
                                   .order_by(Chatroom.last_activity_at.desc(), Chatroom.id.desc())).all()
        return current_app.json.dumps({"chatrooms": _room_schema.dump(rooms, many=True)}).encode()
    return cached_chatroom_list(user_id, render)


def get_room(user_id: int, room_id: int) -> Chatroom:
    """The user's room; 404 when it does not exist or belongs to someone else."""
    room = db.session.scalars(select(Chatroom).where(Chatroom.id == room_id, Chatroom.user_id == user_id)).first()
    if room is None:
        raise NotFound("No such chatroom.", error="chatroom_not_found")
    return room


def room_with_messages(user_id: int, room_id: int, limit: int) -> dict[str, Any]:
    """The room plus its newest `limit` messages (oldest first) and whether older ones exist."""
    room = get_room(user_id, room_id)
    messages, has_more = page_messages(room.id, before=None, after=None, limit=limit)
    fields = ("id", "name", "created_at", "updated_at", "last_message_at", "message_count")
    return {**{name: getattr(room, name) for name in fields}, "messages": messages, "has_more": has_more}


def page_messages(room_id: int, before: int | None, after: int | None, limit: int) -> tuple[list[Message], bool]:
    """A page of a room's messages, oldest first: the newest `limit` (or those before/after an id)."""
    query = select(Message).where(Message.chatroom_id == room_id)
    if after is not None:
        rows = db.session.scalars(query.where(Message.id > after).order_by(Message.id.asc()).limit(limit + 1)).all()
        return list(rows[:limit]), len(rows) > limit
    if before is not None:
        query = query.where(Message.id < before)
    rows = db.session.scalars(query.order_by(Message.id.desc()).limit(limit + 1)).all()
    return list(reversed(rows[:limit])), len(rows) > limit


def rename_room(user_id: int, room_id: int, name: str) -> Chatroom:
    """Rename the user's room."""
    room = get_room(user_id, room_id)
    room.name = name.strip()
    db.session.commit()
    drop_chatroom_list(user_id)
    return room


def delete_room(user_id: int, room_id: int) -> None:
    """Delete the user's room and its messages."""
    room = get_room(user_id, room_id)
    # Explicit delete: SQLite without FK enforcement on old files and bulk paths never miss a message.
    db.session.execute(delete(Message).where(Message.chatroom_id == room.id))
    db.session.delete(room)
    db.session.commit()
    drop_chatroom_list(user_id)
