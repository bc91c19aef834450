"""Share links: a frozen, read-only snapshot of a room's active branch that anyone holding its id may read."""
from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from gemini_backend.errors import Conflict, NotFound
from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, Share, utcnow
from gemini_backend.schemas.shares import SHARED_MESSAGE_FIELDS, SharedMessageSchema
from gemini_backend.services import branches
from gemini_backend.services.chat import get_room

_shared_message_schema = SharedMessageSchema()
# token_urlsafe's alphabet; anything else (NUL, a slash, 10 kB of text) is no share and never reaches the database.
_SHARE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SHARE_ID_BYTES = 32  # 256 bits


def snapshot(room: Chatroom) -> list[dict[str, Any]]:
    """The room's active branch as a share shows it; a reply still being written is left out (frozen, it would
    show as pending forever)."""
    return [_shared_message_schema.dump(message) for message in branches.active_branch(room) if message.status != "pending"]


def create_share(user_id: int, room_id: int) -> Share:
    """A new share of the user's room: its name and active branch as they are now (409 when there is nothing)."""
    room = get_room(user_id, room_id)
    messages = snapshot(room)
    if not messages:
        raise Conflict("The room has no messages to share yet.", error="nothing_to_share")
    share = Share(id=secrets.token_urlsafe(SHARE_ID_BYTES), chatroom_id=room.id, user_id=user_id,
                  chatroom_name=room.name, messages=messages, created_at=utcnow())
    db.session.add(share)
    try:
        db.session.commit()
    except IntegrityError:  # the room was deleted meanwhile (the share's foreign key)
        db.session.rollback()
        raise NotFound("No such chatroom.", error="chatroom_not_found") from None
    return share


def list_shares(user_id: int, room_id: int) -> list[Share]:
    """The shares of the user's room, newest first."""
    room = get_room(user_id, room_id)
    return list(db.session.scalars(select(Share).where(Share.chatroom_id == room.id, Share.user_id == user_id)
                                   .order_by(Share.created_at.desc(), Share.id)).all())


def revoke_share(user_id: int, room_id: int, share_id: str) -> None:
    """Delete a share of the user's room: its link answers 404 from now on."""
    room = get_room(user_id, room_id)
    deleted = 0
    if _SHARE_ID.fullmatch(share_id):
        deleted = db.session.execute(delete(Share).where(Share.id == share_id, Share.chatroom_id == room.id,
                                                         Share.user_id == user_id)).rowcount
    db.session.commit()
    if not deleted:
        raise NotFound("No such share.", error="share_not_found")


def shared_snapshot(share_id: str) -> dict[str, Any]:
    """The snapshot behind a link, whoever asks, as SharedSnapshotSchema describes it (already dumped when it was
    taken); 404 when it never existed, was revoked or its room deleted."""
    share = db.session.get(Share, share_id) if _SHARE_ID.fullmatch(share_id) else None
    if share is None:
        raise NotFound("No such share: the link is wrong, or it was revoked.", error="share_not_found")
    return {"chatroom_name": share.chatroom_name, "messages": shared_messages(share),
            "created_at": share.created_at.isoformat()}


def shared_messages(share: Share) -> list[dict[str, Any]]:
    """A share's messages as the link shows them: only the fields shared today, even from a snapshot taken when
    more were."""
    return [{key: message[key] for key in SHARED_MESSAGE_FIELDS if key in message} for message in share.messages]
