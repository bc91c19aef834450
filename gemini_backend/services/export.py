"""Exports: a room as JSON (its whole message tree) or Markdown (its active branch), and everything stored about a
user as one JSON document.

The JSON documents are written piece by piece: messages are read a page at a time, each page in a short transaction
of its own that ends before the page is handed to the client, so an export of thousands of messages neither sits in
memory at once nor holds a database connection (or a transaction) while a slow client reads.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterator

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import defer
from werkzeug.utils import secure_filename

from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, Message, Share, StoredFile, User, utcnow
from gemini_backend.schemas.auth import UserSchema
from gemini_backend.schemas.billing import SubscriptionSchema, UsageSchema
from gemini_backend.schemas.chat import ChatroomSchema, MessageSchema
from gemini_backend.schemas.files import FileSchema
from gemini_backend.services import branches, files, quota, token_usage
from gemini_backend.services.shares import shared_messages

PAGE_SIZE = 500  # messages (or files, shares) read per query and written per chunk
_room_schema = ChatroomSchema()
_message_schema = MessageSchema()
_file_schema = FileSchema()
ROLE_HEADINGS = {"user": "You", "model": "Gemini"}


def _json(value: Any) -> str:
    return current_app.json.dumps(value)


def _open_object(fields: dict[str, Any], key: str) -> str:
    """`{...fields, "key": [` : an object whose last member, a list, is written next, piece by piece."""
    return f'{_json(fields)[:-1]}{", " if fields else ""}{_json(key)}: ['


def _end_read() -> None:
    """End the page's read transaction and hand its connection back before the client takes its time with it."""
    db.session.commit()


def _pages(query, key) -> Iterator[list[Any]]:
    """The rows of an ORM query in pages of PAGE_SIZE, by ascending `key` (keyset paging: each page is one short
    query, whatever the total)."""
    after = None
    while True:
        page_query = query if after is None else query.where(key > after)
        rows = list(db.session.scalars(page_query.order_by(key).limit(PAGE_SIZE)).all())
        if not rows:
            return
        after = getattr(rows[-1], key.key)  # before the page is written: its read ends then, expiring the rows
        yield rows
        if len(rows) < PAGE_SIZE:
            return


def _list_items(query, key, dump: Callable[[Any], dict[str, Any]],
                prepare: Callable[[list[Any]], None] | None = None) -> Iterator[str]:
    """The JSON items of a list, one chunk per page (prepared by `prepare` first), with their separating commas."""
    first = True
    for rows in _pages(query, key):
        if prepare is not None:
            prepare(rows)
        text = ", ".join(_json(dump(row)) for row in rows)
        _end_read()
        yield text if first else ", " + text
        first = False


def room_json(room: Chatroom) -> Iterator[str]:
    """The room as JSON: its fields and every message of every branch, oldest first (RoomExportSchema)."""
    head = _open_object(_room_schema.dump(room), "messages")
    room_id = room.id
    _end_read()
    yield head
    yield from _list_items(select(Message).where(Message.chatroom_id == room_id), Message.id, _message_schema.dump,
                           files.with_attachments)
    yield "]}"


def user_export(user: User, share_url: Callable[[str], str]) -> Iterator[str]:
    """Everything stored about the user as one JSON document (UserExportSchema), in pieces. The profile, subscription
    and usage are read at once (a failure there is still an error response); the rest as the client reads."""
    usage = {**quota.usage(user.id, user.tier), **token_usage.token_totals(user.id)}
    head = {"exported_at": utcnow().isoformat(),
            "user": UserSchema().dump(user), "subscription": SubscriptionSchema().dump(user),
            "usage": UsageSchema().dump(usage)}
    user_id = user.id
    _end_read()
    return _user_document(user_id, head, share_url)


def _user_document(user_id: int, head: dict[str, Any], share_url: Callable[[str], str]) -> Iterator[str]:
    yield _open_object(head, "files")
    # Only the metadata columns: a file's bytes are never read.
    stored_files = select(StoredFile).options(defer(StoredFile.data)).where(StoredFile.user_id == user_id)
    yield from _list_items(stored_files, StoredFile.id, _file_schema.dump)
    yield '], "shares": ['
    yield from _list_items(select(Share).where(Share.user_id == user_id), Share.id,
                           lambda share: _share_fields(share, share_url))
    yield '], "chatrooms": ['
    room_ids = list(db.session.scalars(select(Chatroom.id).where(Chatroom.user_id == user_id)
                                       .order_by(Chatroom.id)).all())
    _end_read()
    first = True
    for room_id in room_ids:
        room = db.session.scalars(select(Chatroom).where(Chatroom.id == room_id)).first()
        if room is None:  # deleted while the export was being written
            _end_read()
            continue
        if not first:
            yield ", "
        first = False
        yield from room_json(room)
    yield "]}"


def _share_fields(share: Share, share_url: Callable[[str], str]) -> dict[str, Any]:
    """A share as ExportedShareSchema describes it (its messages were dumped when the snapshot was taken)."""
    return {"id": share.id, "url": share_url(share.id), "chatroom_id": share.chatroom_id,
            "chatroom_name": share.chatroom_name, "created_at": share.created_at.isoformat(),
            "messages": shared_messages(share)}


def export_filename(room: Chatroom, extension: str) -> str:
    """A download name safe in any file system and header: `chatroom-<id>-<ASCII name>.<ext>`."""
    name = secure_filename(room.name)[:60].strip("._-")
    return f"chatroom-{room.id}{'-' + name if name else ''}.{extension}"


def user_export_filename(user_id: int, now: datetime | None = None) -> str:
    """`gemini-backend-export-<user id>-<UTC date>.json`."""
    return f"gemini-backend-export-{user_id}-{(now or utcnow()):%Y-%m-%d}.json"


def _status_note(message: Message) -> str | None:
    """How the Markdown marks a reply that did not end normally."""
    detail = (message.error or {}).get("message")
    if message.status == "stopped":
        return "Stopped by the user; the text above is what was written until then."
    if message.status == "failed":
        return "This reply failed" + (f": {detail}" if detail else ".")
    if message.status == "blocked":
        return "This reply was blocked" + (f": {detail}" if detail else ".")
    if message.status == "pending":
        return "This reply was still being written when the room was exported."
    return None


def room_markdown(room: Chatroom) -> str:
    """The room's active branch to read: the title, then each turn under a heading naming who spoke."""
    messages = branches.active_branch(room)
    files.with_attachments(messages)
    title = " ".join(room.name.split()) or Chatroom.DEFAULT_NAME
    lines = [f"# {title}", "", f"_Exported {utcnow():%Y-%m-%d %H:%M} UTC: the conversation as the room shows it "
                               f"({len(messages)} messages)._", ""]
    for message in messages:
        lines += [f"## {ROLE_HEADINGS.get(message.role, message.role)}", ""]
        if message.content:
            lines += [message.content.rstrip(), ""]
        for attached in getattr(message, "attachments", None) or []:
            lines += [f"> _Attached: {' '.join(attached['name'].split())} ({attached['mime_type']}, "
                      f"{attached['size']} bytes)_", ""]
        note = _status_note(message)
        if note:
            lines += [f"> _{' '.join(note.split())}_", ""]
    return "\n".join(lines)
