"""Chatrooms: create, list (cached per user), read with messages, rename, delete."""
from __future__ import annotations

import functools
import hashlib
import logging
from typing import Any, Callable

from flask import current_app
from sqlalchemy import delete, select

from gemini_backend.caching import chatroom_list_version_key, drop_chatroom_list, new_version, version_ttl
from gemini_backend.errors import NotFound
from gemini_backend.extensions import cache, db
from gemini_backend.models import Chatroom, Message, utcnow
from gemini_backend.schemas.chat import ChatroomSchema
from gemini_backend.services import branches

_room_schema = ChatroomSchema()
log = logging.getLogger(__name__)


@functools.cache
def chatroom_list_shape() -> str:
    """A short digest of the Chatroom JSON's fields: a deploy that changes them reads and writes new keys, so it
    never serves a body rendered by the code before it."""
    fields = ",".join(sorted(_room_schema.fields))
    return hashlib.sha256(fields.encode()).hexdigest()[:8]


def chatroom_list_key(user_id: int) -> str:
    """Cache key of one user's chatroom list: (version, encoded JSON body)."""
    return f"chatrooms:user:{user_id}:list:{chatroom_list_shape()}"


def cached_chatroom_list(user_id: int, render: Callable[[], bytes]) -> tuple[bytes, bool]:
    """The user's encoded list body from the cache, or render() it and store it; (body, hit).

    The list is stored with the version it was rendered under and counts only while that version is current,
    so a render that raced a write is never served. Redis down: render() only.
    """
    if current_app.config["CHATROOM_CACHE_TTL"] <= 0:  # 0 turns the list cache off
        return render(), False
    version_key = chatroom_list_version_key(user_id)
    try:
        version, cached = cache.get_many(version_key, chatroom_list_key(user_id))  # one round trip
        if version is None:
            cache.add(version_key, new_version(), timeout=version_ttl())
            version = cache.get(version_key)
    except Exception as exc:
        log.warning("chatroom list cache unavailable: %s", exc)
        return render(), False
    if isinstance(cached, tuple) and len(cached) == 2 and cached[0] == version:
        return cached[1], True
    body = render()
    try:
        cache.set(chatroom_list_key(user_id), (version, body), timeout=current_app.config["CHATROOM_CACHE_TTL"])
    except Exception as exc:
        log.warning("chatroom list cache write failed: %s", exc)
    return body, False


def create_room(user_id: int, name: str, **settings: Any) -> Chatroom:
    """A new room for the user, with its reply settings (ai.RoomSettings' fields)."""
    now = utcnow()
    room = Chatroom(user_id=user_id, name=name.strip(), created_at=now, updated_at=now, last_activity_at=now,
                    **settings)
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
    """The room, the newest `limit` messages of its active branch (oldest first) and whether older ones exist, as
    ChatroomDetailSchema dumps them: {room, messages, has_more}."""
    room = get_room(user_id, room_id)
    messages, has_more = branches.branch_page(room, before=None, after=None, limit=limit)
    return {"room": room, "messages": messages, "has_more": has_more}


def page_messages(user_id: int, room_id: int, before: int | None, after: int | None,
                  limit: int) -> tuple[list[Message], bool]:
    """A page of the room's active branch, oldest first: the newest `limit`, or those before/after a message."""
    return branches.branch_page(get_room(user_id, room_id), before, after, limit)


def switch_branch(user_id: int, room_id: int, message_id: int, limit: int) -> dict[str, Any]:
    """Make the branch through a message the room's active one; the room detail along it."""
    branches.activate(get_room(user_id, room_id), message_id)
    drop_chatroom_list(user_id)
    return room_with_messages(user_id, room_id, limit)


def update_room(user_id: int, room_id: int, changes: dict[str, Any]) -> Chatroom:
    """Rename the user's room or change its reply settings (only the fields given)."""
    room = get_room(user_id, room_id)
    if "name" in changes:
        changes = {**changes, "name": changes["name"].strip()}
    for field, value in changes.items():
        setattr(room, field, value)
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
