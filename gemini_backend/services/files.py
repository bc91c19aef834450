"""Attachments: files a user uploads to send to Gemini with messages, stored in the database once per user and
content hash; their type is read from the bytes, never taken from the client's word alone."""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import IO, Any, Sequence

import filetype
from flask import current_app
from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from gemini_backend.errors import AppError, Conflict, InvalidField, NotFound
from gemini_backend.extensions import db
from gemini_backend.models import Message, MessageAttachment, StoredFile
from gemini_backend.services.tokens import user_state

MAX_NAME = 255
# The multipart framing around the file (boundaries, part headers, a long file name) on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024

# What the file's name says its type is, for the accepted types (a name that claims another type than the bytes
# is refused: an executable renamed .png).
_EXTENSIONS = {"png": "image/png", "apng": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
               "jpe": "image/jpeg", "jfif": "image/jpeg", "webp": "image/webp", "heic": "image/heic",
               "heif": "image/heic", "gif": "image/gif", "pdf": "application/pdf", "txt": "text/plain",
               "text": "text/plain", "md": "text/markdown", "markdown": "text/markdown"}
# Other spellings clients send for the same types.
_DECLARED_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/heif": "image/heic",
                     "image/apng": "image/png", "text/x-markdown": "text/markdown",
                     "application/x-pdf": "application/pdf"}
# Declarations that say nothing about the type: the bytes decide alone.
_UNDECLARED = {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\"\\/]")


def upload_limit(user_id: int) -> int:
    """The largest file the user may upload: UPLOAD_MAX_BYTES, or UPLOAD_MAX_BYTES_PRO on Pro."""
    state = user_state(user_id) or {}
    cfg = current_app.config
    return cfg["UPLOAD_MAX_BYTES_PRO"] if state.get("tier") == "pro" else cfg["UPLOAD_MAX_BYTES"]


def store_upload(user_id: int, stream: IO[bytes], name: str | None, declared: str | None) -> tuple[StoredFile, bool]:
    """Check and store an uploaded file (413 too large, 415 a type not accepted or not what the bytes are, 422
    empty); (the file, whether it is new): the same bytes uploaded again answer the file stored the first time."""
    limit = upload_limit(user_id)
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise AppError(f"The file is larger than {limit} bytes, the most your plan uploads.", status=413,
                       error="file_too_large")
    if not data:
        raise InvalidField("file", "Must not be empty.", location="files")
    name = clean_name(name)
    mime_type = detect_type(data, declared, name)
    sha256 = hashlib.sha256(data).hexdigest()
    existing = _find_by_hash(user_id, sha256)
    if existing is not None:
        return existing, False
    stored = StoredFile(user_id=user_id, name=name, mime_type=mime_type, size=len(data), sha256=sha256, data=data)
    db.session.add(stored)
    try:
        db.session.commit()
    except IntegrityError:  # the same bytes, uploaded at the same moment, were stored first
        db.session.rollback()
        existing = _find_by_hash(user_id, sha256)
        if existing is None:
            raise
        return existing, False
    return stored, True


def _find_by_hash(user_id: int, sha256: str) -> StoredFile | None:
    return db.session.scalars(select(StoredFile).where(StoredFile.user_id == user_id,
                                                       StoredFile.sha256 == sha256)).first()


def clean_name(name: str | None) -> str:
    """The file name to keep: its last path segment, without control characters, quotes or slashes, at most
    MAX_NAME characters; "file" when nothing is left."""
    name = re.split(r"[\\/]", name or "")[-1]
    name = _UNSAFE_NAME.sub("", name).strip().encode("utf-8", "ignore").decode("utf-8")  # drops lone surrogates
    if len(name) > MAX_NAME:
        stem, dot, extension = name.rpartition(".")
        name = (stem[:MAX_NAME - len(extension) - 1] + dot + extension) if dot and len(extension) < 16 \
            else name[:MAX_NAME]
    return name or "file"


def detect_type(data: bytes, declared: str | None, name: str) -> str:
    """The file's MIME type as its bytes show it (magic numbers; text: valid UTF-8 without NUL). 415 when that is
    not an accepted type, or when the declared Content-Type or the name's extension claims another type."""
    accepted = current_app.config["ATTACHMENT_TYPES"]
    declared = (declared or "").split(";")[0].strip().lower()
    declared = _DECLARED_ALIASES.get(declared, declared)
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    named = _EXTENSIONS.get(extension)
    guess = filetype.guess(data)
    if guess is not None:
        actual = _DECLARED_ALIASES.get(guess.mime, guess.mime)
    elif _is_text(data):
        markdown = "text/markdown" in (declared, named)
        actual = "text/markdown" if markdown else "text/plain"
    else:
        actual = None
    if actual is None or actual not in accepted:
        raise _unsupported(f"This kind of file is not accepted{f' ({actual})' if actual else ''}.")
    if actual == "application/pdf" and not _is_whole_pdf(data):
        raise _unsupported("The file starts like a PDF but is not one (no cross-reference trailer).")
    if actual.startswith("text/"):
        # Any text/* declaration fits text (text/csv, text/x-python: plain text to Gemini).
        declared_other = declared not in _UNDECLARED and not declared.startswith("text/")
        named_other = named is not None and not named.startswith("text/")
    else:
        declared_other = declared not in _UNDECLARED and declared != actual
        named_other = named is not None and named != actual
    if declared_other:
        raise _unsupported(f"The file was sent as {declared} but its content is {actual}.")
    if named_other:
        raise _unsupported(f"The file's name says {named} but its content is {actual}.")
    return actual


def _is_whole_pdf(data: bytes) -> bool:
    """A PDF beyond its first bytes (all filetype reads): a version header, and the trailer every PDF ends with,
    `startxref` and `%%EOF` in its last KiB (where readers look for it)."""
    tail = data[-1024:]
    return re.match(rb"%PDF-[12]\.\d", data) is not None and b"startxref" in tail and b"%%EOF" in tail


def _is_text(data: bytes) -> bool:
    """Plain text: valid UTF-8 without NUL bytes."""
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unsupported(reason: str) -> AppError:
    types = ", ".join(current_app.config["ATTACHMENT_TYPES"])
    return AppError(f"{reason} Accepted: {types}.", status=415, error="unsupported_file_type")


def get_file(user_id: int, file_id: int, with_data: bool = False) -> StoredFile:
    """One of the user's files (its bytes loaded when asked); 404 for another user's or an unknown id."""
    query = select(StoredFile).where(StoredFile.id == file_id, StoredFile.user_id == user_id)
    if with_data:
        query = query.options(undefer(StoredFile.data))
    stored = db.session.scalars(query).first()
    if stored is None:
        raise NotFound("No such file.", error="file_not_found")
    return stored


def list_files(user_id: int, before: int | None, limit: int) -> tuple[list[StoredFile], bool]:
    """The user's files, newest first (before: those older than this id), without their bytes; whether more
    exist."""
    query = select(StoredFile).where(StoredFile.user_id == user_id)
    if before is not None:
        query = query.where(StoredFile.id < before)
    rows = list(db.session.scalars(query.order_by(StoredFile.id.desc()).limit(limit + 1)).all())
    return rows[:limit], len(rows) > limit


_IN_USE = exists().where(MessageAttachment.file_id == StoredFile.id)


def delete_file(user_id: int, file_id: int) -> None:
    """Delete one of the user's files that no message uses (409 file_in_use otherwise)."""
    try:
        deleted = db.session.execute(delete(StoredFile).where(
            StoredFile.id == file_id, StoredFile.user_id == user_id, ~_IN_USE)).rowcount
        db.session.commit()
    except IntegrityError:  # a message attached it between the check and the delete
        db.session.rollback()
        deleted = 0
    if deleted == 1:
        return
    get_file(user_id, file_id)  # 404 when it is not the user's
    raise Conflict("A message uses this file; delete the chatroom (or the message) first.", error="file_in_use")


def attachable(user_id: int, file_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The metadata ({id, name, mime_type, size}) of files the user attaches to a message, in the order given;
    422 when one is unknown or another user's (both read the same: no hint that a foreign id exists)."""
    rows = db.session.execute(select(StoredFile.id, StoredFile.name, StoredFile.mime_type, StoredFile.size)
                              .where(StoredFile.user_id == user_id, StoredFile.id.in_(file_ids))).all()
    db.session.commit()  # the post writes on a connection of its own: hand this one back
    found = {row.id: dict(row._mapping) for row in rows}
    missing = [file_id for file_id in file_ids if file_id not in found]
    if missing:
        problem = f"No such file of yours: {', '.join(map(str, missing))}."
        raise InvalidField("attachment_ids", problem)
    return [found[file_id] for file_id in file_ids]


def with_attachments(page: Sequence[Message]) -> None:
    """Set the `attachments` of each user message of a page: [{id, name, mime_type, size}] (one query)."""
    ids = [message.id for message in page if message.role == "user"]
    if not ids:
        return
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in db.session.execute(
            select(MessageAttachment.message_id, StoredFile.id, StoredFile.name, StoredFile.mime_type,
                   StoredFile.size)
            .join(StoredFile, StoredFile.id == MessageAttachment.file_id)
            .where(MessageAttachment.message_id.in_(ids))
            .order_by(MessageAttachment.message_id, MessageAttachment.position)):
        found[row.message_id].append({"id": row.id, "name": row.name, "mime_type": row.mime_type, "size": row.size})
    for message in page:
        if message.role == "user":
            message.attachments = found.get(message.id, [])
