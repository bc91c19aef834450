"""Answering messages (the worker side): claim a pending reply, ask Gemini, store exactly one outcome.

Guarantees: a reply is worked on only under a lease taken by a conditional UPDATE, so two consumers never
both answer it; it is written only by the lease holder, only while pending, so it ends exactly once; a
crashed attempt's lease expires and the sweeper hands the reply to another consumer.

Cost: a reply takes two short transactions (lease + history, then the outcome), none open during the Gemini
call. The statements are Core SQL on the tables, built once: building, cache-keying and ORM-processing them per
call used to cost more CPU than running them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

from flask import current_app
from huey.exceptions import RetryTask
from sqlalchemy import (ColumnElement, LargeBinary, and_, bindparam, case, func, literal, null, or_, select,
                        type_coerce, update)
from sqlalchemy.engine import Connection

from gemini_backend import metrics
from gemini_backend.ai import (IMAGE_HEAD_BYTES, JPEG_HEAD_BYTES, AiBlocked, AiError, Attachment, GeminiSettings,
                               RoomSettings, Turn, Usage, attachment_tokens, fit_history, get_client, history_budget)
from gemini_backend.caching import drop_chatroom_list
from gemini_backend.extensions import cache, db
from gemini_backend.models import Chatroom, Message, MessageAttachment, StoredFile, utcnow
from gemini_backend.services import quota, stopping, streams, titles
from gemini_backend.services.branches import ancestry
from gemini_backend.services.stopping import StopSignal
from gemini_backend.taskqueue import app_task

log = logging.getLogger(__name__)
HISTORY_ROWS = 400  # newest rows read for context; the token budget trims further
messages = Message.__table__
chatrooms = Chatroom.__table__
attachments = MessageAttachment.__table__
files = StoredFile.__table__

# The per-reply statements, built once; bind parameters carry each reply's values.
_TAKE_LEASE = (
    update(messages)
    .where(messages.c.id == bindparam("reply_id"), messages.c.role == "model", messages.c.status == "pending",
           or_(messages.c.lease_token.is_(None), messages.c.lease_expires_at < bindparam("now")))
    .values(lease_token=bindparam("token"), lease_expires_at=bindparam("expires"), attempts=messages.c.attempts + 1)
    .returning(messages.c.attempts, messages.c.reply_to, messages.c.chatroom_id, messages.c.stop_requested_at)
)
# has_files: an index probe per row, so a history without attachments costs no query of its own.
_HAS_FILES = select(literal(1)).where(attachments.c.message_id == messages.c.id).exists().label("has_files")
_HISTORY_COLUMNS = (messages.c.id, messages.c.role, messages.c.content, messages.c.status, messages.c.reply_to,
                    _HAS_FILES)
# The branch the reply answers: its user message and that message's ancestors, never another branch.
_PATH = ancestry(bindparam("user_message_id"), max_rows=HISTORY_ROWS)
_HISTORY = select(*_HISTORY_COLUMNS).join(_PATH, messages.c.id == _PATH.c.id).order_by(_PATH.c.depth)
# The files of the history's user messages, without their bytes: what each costs (an image's first bytes give
# its size), in the order the user gave them.
_HEAD = type_coerce(case((files.c.mime_type == "image/jpeg", func.substr(files.c.data, 1, JPEG_HEAD_BYTES)),
                         (files.c.mime_type.like("image/%"), func.substr(files.c.data, 1, IMAGE_HEAD_BYTES)),
                         else_=null()), LargeBinary)
_HISTORY_FILES = (
    select(attachments.c.message_id, files.c.id, files.c.mime_type, files.c.size, files.c.sha256, _HEAD.label("head"))
    .join(files, files.c.id == attachments.c.file_id)
    .where(attachments.c.message_id.in_(bindparam("message_ids", expanding=True)))
    .order_by(attachments.c.message_id, attachments.c.position, attachments.c.file_id)
)
_FILE_BYTES = select(files.c.id, files.c.data).where(files.c.id.in_(bindparam("file_ids", expanding=True)))
_ROOM_SETTINGS = select(*(chatrooms.c[name] for name in RoomSettings.__dataclass_fields__)).where(
    chatrooms.c.id == bindparam("room_id"))
_WRITE_OUTCOME = (
    update(messages)
    .where(messages.c.id == bindparam("reply_id"), messages.c.lease_token == bindparam("token"),
           messages.c.status == "pending")
    .values(status=bindparam("new_status"), content=bindparam("new_content"), error=bindparam("new_error"),
            usage=bindparam("new_usage"), completed_at=bindparam("now"), lease_token=None, lease_expires_at=None)
)
_TOUCH_ROOM = (
    update(chatrooms).where(chatrooms.c.id == bindparam("room_id"))
    .values(last_message_at=bindparam("now"), last_activity_at=bindparam("now"), updated_at=bindparam("now"))
    .returning(chatrooms.c.user_id, chatrooms.c.name)
)


class ReplyStopped(Exception):
    """The user stopped the reply mid-stream; `text` is what Gemini had sent until then."""

    def __init__(self, text: str) -> None:
        super().__init__("stopped by the user")
        self.text = text


class RetryLater(Exception):
    """A transient provider error; the task is re-run after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay:.1f}s")
        self.delay = delay


@dataclass(frozen=True)
class Claim:
    """A lease on one pending reply."""

    reply_id: int
    token: str
    attempt: int
    user_message_id: int
    room_id: int
    stop_requested: bool = False
    claimed_at: float = field(default_factory=time.monotonic, compare=False)  # time.monotonic(), for metrics


def lease_seconds() -> int:
    """How long an attempt may run before another consumer may take the reply over."""
    cfg = current_app.config
    return cfg["REPLY_LEASE_SECONDS"] or int(max(30, cfg["GEMINI_TIMEOUT"] + 15))


def claim_reply(reply_id: int) -> Claim | None:
    """Take the lease if the reply is pending and nobody holds a live lease; None otherwise."""
    with db.engine.begin() as conn:
        return _take_lease(conn, reply_id)


def claim_with_history(reply_id: int) -> tuple[Claim, list[Turn], RoomSettings] | None:
    """Take the lease and read the history and the room's reply settings in one transaction; None when the reply
    is not ours to answer."""
    with db.engine.begin() as conn:
        claim = _take_lease(conn, reply_id)
        if claim is None:
            return None
        rows = conn.execute(_HISTORY, {"user_message_id": claim.user_message_id}).all()
        room = RoomSettings(**conn.execute(_ROOM_SETTINGS, {"room_id": claim.room_id}).one()._mapping)
        with_files = [r.id for r in rows if r.role == "user" and r.has_files]
        if not with_files:
            return claim, _turns(rows, claim), room
        history = _turns(rows, claim, _history_files(conn, with_files))
        return claim, _with_sent_bytes(conn, history), room


def _history_files(conn: Connection, message_ids: list[int]) -> dict[int, tuple[Attachment, ...]]:
    """The files of these user messages, by message, without their bytes."""
    found: dict[int, list[Attachment]] = {}
    for row in conn.execute(_HISTORY_FILES, {"message_ids": message_ids}):
        found.setdefault(row.message_id, []).append(Attachment(
            row.mime_type, row.sha256, attachment_tokens(row.mime_type, row.size, row.head), file_id=row.id))
    return {message_id: tuple(files_) for message_id, files_ in found.items()}


def _with_sent_bytes(conn: Connection, history: list[Turn]) -> list[Turn]:
    """The history with the bytes of the files the request sends (those of the turns that fit the budget, as the
    client will choose them); the other turns' files stay unloaded."""
    sent = {a.file_id for turn in fit_history(history, history_budget(current_app.config))
            for a in turn.attachments}
    if not sent:
        return history
    data = {row.id: row.data for row in conn.execute(_FILE_BYTES, {"file_ids": sorted(sent)})}
    return [dataclasses.replace(turn, attachments=tuple(
        dataclasses.replace(a, data=data.get(a.file_id)) if a.file_id in sent else a for a in turn.attachments))
        if turn.attachments else turn for turn in history]


def _lease_params(reply_id: int) -> dict[str, Any]:
    """Parameters of _TAKE_LEASE: a new token and the lease's expiry."""
    now = utcnow()
    return {"reply_id": reply_id, "now": now, "token": uuid.uuid4().hex,
            "expires": now + timedelta(seconds=lease_seconds())}


def _take_lease(conn: Connection, reply_id: int) -> Claim | None:
    """One conditional UPDATE that takes the lease and returns what the attempt needs."""
    params = _lease_params(reply_id)
    row = conn.execute(_TAKE_LEASE, params).first()
    if row is None:
        return None
    return Claim(reply_id, params["token"], row.attempts, row.reply_to, row.chatroom_id,
                 stop_requested=row.stop_requested_at is not None)


def _turns(rows: Sequence[Any], claim: Claim,
           files_of: dict[int, tuple[Attachment, ...]] | None = None) -> list[Turn]:
    """The branch's rows (newest first) as turns up to the user message, oldest first, leaving out exchanges
    without an answer (failed, blocked, unanswered, stopped before any text); files_of: the user messages' files."""
    def answer(row: Any) -> bool:
        return row.role == "model" and (row.status == "complete" or (row.status == "stopped" and row.content))
    answered = {r.reply_to for r in rows if answer(r)}
    files_of = files_of or {}
    return [Turn(r.role, r.content, files_of.get(r.id, ())) for r in reversed(rows)
            if answer(r) or (r.role == "user" and (r.id in answered or r.id == claim.user_message_id))]


@app_task(retries=3, retry_delay=10)
def generate_reply(reply_id: int) -> str:
    """The queued task: answer one pending reply (re-run by Huey after transient provider errors, with backoff)."""
    try:
        return answer_reply(reply_id)
    except RetryLater as exc:
        # RetryTask does not use up Huey's own retries: our attempt counter in the database bounds them.
        raise RetryTask(delay=exc.delay) from None


def enqueue_reply(reply_id: int) -> None:
    """Queue generate_reply; a failure is logged, not raised: the sweeper picks the reply up later."""
    try:
        generate_reply(reply_id)
    except Exception as exc:
        log.warning("could not enqueue reply %s (the sweeper will): %s", reply_id, exc)


def answer_reply(reply_id: int) -> str:
    """Produce the reply if it is still pending; returns the outcome (complete/failed/blocked/stopped/skipped)."""
    with StopSignal(reply_id) as stop:  # listening before the claim reads the row: no stop falls between
        claimed = claim_with_history(reply_id)
        if claimed is None:
            return "skipped"
        claim, history, room = claimed
        if claim.stop_requested:  # stopped before this attempt began: Gemini is not called
            return finish(claim, "stopped", give_back_quota=claim.attempt == 1)
        return _attempt(claim, history, room, streams.AttemptStream(reply_id, claim.attempt), stop)


def request_stop(reply_id: int) -> None:
    """The user stops a pending reply: one no attempt is running ends `stopped` here (its quota unit given back
    when Gemini was never called); a running one is asked to stop, through the row and Redis."""
    claim = claim_reply(reply_id)  # succeeds only when no live attempt holds the reply
    if claim is not None:
        finish(claim, "stopped", give_back_quota=claim.attempt == 1)
        return
    with db.engine.begin() as conn:
        conn.execute(update(messages).where(messages.c.id == reply_id, messages.c.status == "pending")
                     .values(stop_requested_at=utcnow()))
    stopping.announce(reply_id)


def _attempt(claim: Claim, history: list[Turn], room: RoomSettings, stream: streams.AttemptStream,
             stop: StopSignal) -> str:
    """Ask Gemini and store the outcome, or give the lease back and raise RetryLater."""
    settings = GeminiSettings.from_config(current_app.config)
    room = settings.for_room(room)  # the model and system instruction this reply is asked with
    usage = Usage()  # stored with the outcome: failed and blocked calls are billed too
    stream.reset()
    try:
        text = _answer(claim, settings, room, history, stream, usage, stop)
    except ReplyStopped as exc:  # Gemini was called: the unit stays used
        return finish(claim, "stopped", content=exc.text, usage=usage, timed=True, give_back_quota=False)
    except AiBlocked as exc:
        return finish(claim, "blocked", error={"code": exc.code, "message": exc.message}, usage=usage, timed=True)
    except AiError as exc:
        max_attempts = current_app.config["REPLY_MAX_ATTEMPTS"]
        if exc.transient and claim.attempt < max_attempts:
            delay = retry_delay(claim.attempt)
            release_for_retry(claim, delay)
            log.info("reply %s attempt %s: %s; retrying in %.1fs", claim.reply_id, claim.attempt, exc.code, delay)
            raise RetryLater(delay) from exc
        if exc.transient:
            message = f"Gemini kept failing after {claim.attempt} attempts ({exc.message})"
            return finish(claim, "failed", error={"code": exc.code, "message": message}, usage=usage, timed=True)
        return finish(claim, "failed", error={"code": exc.code, "message": exc.message}, usage=usage, timed=True)
    return finish(claim, "complete", content=text, usage=usage, timed=True)


def _answer(claim: Claim, settings: GeminiSettings, room: RoomSettings, history: list[Turn],
            stream: streams.AttemptStream, usage: Usage, stop: StopSignal) -> str:
    """Gemini's answer, or, with GEMINI_RESPONSE_CACHE_TTL set, the stored answer to an identical request (which
    calls Gemini for nothing, so reports no usage)."""
    ttl = current_app.config["GEMINI_RESPONSE_CACHE_TTL"]
    if ttl <= 0:
        return _ask_gemini(claim, settings, room, history, stream, usage, stop)
    key = response_cache_key(settings, room, history)
    cached = _cache_get(key)
    if cached:
        stream.delta(cached)
        return cached
    text = _ask_gemini(claim, settings, room, history, stream, usage, stop)
    _cache_set(key, text, ttl)
    return text


def response_cache_key(settings: GeminiSettings, room: RoomSettings, history: list[Turn]) -> str:
    """Identical requests (model, system instruction, generation settings, whole history with its files' content
    hashes) share a key (room: settings.for_room's, so a room's null and the server's default are the same
    request)."""
    material = json.dumps([room.model, room.system_instruction, room.temperature, room.max_output_tokens,
                           settings.history_token_budget,
                           [[t.role, t.text, *([[a.sha256 for a in t.attachments]] if t.attachments else [])]
                            for t in history]], ensure_ascii=False)
    return "gemini-response:" + hashlib.sha256(material.encode()).hexdigest()


def _cache_get(key: str) -> str | None:
    try:
        return cache.get(key)
    except Exception as exc:  # a cache outage only costs a Gemini call
        log.warning("response cache read failed: %s", exc)
        return None


def _cache_set(key: str, text: str, ttl: int) -> None:
    try:
        cache.set(key, text, timeout=ttl)
    except Exception as exc:
        log.warning("response cache write failed: %s", exc)


def _ask_gemini(claim: Claim, settings: GeminiSettings, room: RoomSettings, history: list[Turn],
                stream: streams.AttemptStream, usage: Usage, stop: StopSignal) -> str:
    """Stream the answer, publishing chunks and renewing the lease as they arrive (usage keeps Gemini's token
    counts); the whole text. Raises ReplyStopped, having closed Gemini's stream, when the user stops the reply."""
    parts: list[str] = []
    renew_every = lease_seconds() / 3
    last_renewal = time.monotonic()
    try:
        with closing(get_client(settings).stream(history, usage, room)) as chunks:  # closing ends the HTTP call
            for chunk in chunks:
                if not parts:
                    metrics.first_chunk(room.model, claim.claimed_at)
                parts.append(chunk)
                stream.delta(chunk)
                if stop.requested():
                    raise ReplyStopped("".join(parts))
                if time.monotonic() - last_renewal > renew_every:
                    renew_lease(claim)
                    last_renewal = time.monotonic()
    finally:
        metrics.count_tokens(room.model, usage)  # failed and blocked calls are billed too
    return "".join(parts)


def _lease_held(claim: Claim) -> ColumnElement[bool]:
    """SQL condition: this attempt still holds the reply's lease."""
    return and_(messages.c.id == claim.reply_id, messages.c.lease_token == claim.token)


def renew_lease(claim: Claim) -> None:
    """Extend the lease of a long-running attempt."""
    with db.engine.begin() as conn:
        conn.execute(update(messages).where(_lease_held(claim))
                     .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds())))


def retry_delay(attempt: int) -> float:
    """Exponential backoff: REPLY_RETRY_DELAY x 2^(attempt-1), at most 5 minutes."""
    return min(300.0, current_app.config["REPLY_RETRY_DELAY"] * 2 ** (attempt - 1))


def release_for_retry(claim: Claim, delay: float) -> None:
    """Give up the lease; the sweeper leaves the reply alone until the retry is due."""
    with db.engine.begin() as conn:
        conn.execute(update(messages).where(_lease_held(claim))
                     .values(lease_token=None, lease_expires_at=utcnow() + timedelta(seconds=delay)))


def finish(claim: Claim, status: str, content: str = "", error: dict[str, Any] | None = None,
           usage: Usage | None = None, timed: bool = False, give_back_quota: bool | None = None) -> str:
    """Store the outcome if this attempt still holds the lease; give the quota unit back on failure (or as
    give_back_quota says: a stopped reply keeps it once Gemini was called).

    timed: the attempt's duration counts in the metrics (not for the sweeper, which claims a reply only to fail
    it, nor for a stop before any call)."""
    if give_back_quota is None:
        give_back_quota = status in ("failed", "blocked")
    refund_day = None
    with db.engine.begin() as conn:
        room = _store_outcome(conn, claim, status, content, error, usage.as_record() if usage else None)
        if room is not None and give_back_quota:
            refund_day = _take_back_quota_day(conn, claim.reply_id)
    if room is None:
        log.warning("reply %s: lease lost before finishing; another attempt owns it", claim.reply_id)
        return "skipped"
    owner = room.user_id
    metrics.reply_finished(status, claim.claimed_at if timed else None)
    if refund_day:
        quota.refund(owner, refund_day)
    drop_chatroom_list(owner)  # before the stream's end, so a waiter woken by it reads the new list
    streams.publish_end(claim.reply_id, status)
    if status == "complete" and room.name == Chatroom.DEFAULT_NAME and current_app.config["AUTO_TITLES"]:
        titles.enqueue_title(claim.room_id)
    log.info("reply %s %s after %s attempt(s)", claim.reply_id, status, claim.attempt)
    return status


def _store_outcome(conn: Connection, claim: Claim, status: str, content: str, error: dict[str, Any] | None,
                   usage: dict[str, int] | None) -> Any | None:
    """Write the outcome and touch the room, only under this attempt's lease; the room's (user_id, name), or
    None."""
    params = {"reply_id": claim.reply_id, "token": claim.token, "new_status": status, "new_content": content,
              "new_error": error, "new_usage": usage, "now": utcnow(), "room_id": claim.room_id}
    if conn.execute(_WRITE_OUTCOME, params).rowcount != 1:
        return None
    return conn.execute(_TOUCH_ROOM, params).one()


def _take_back_quota_day(conn: Connection, reply_id: int) -> str | None:
    """Clear the reply's quota day (once) and return it, so its unit is given back exactly once."""
    day = conn.scalar(select(messages.c.quota_day).where(messages.c.id == reply_id))
    if day is None:
        return None
    cleared = conn.execute(update(messages).where(messages.c.id == reply_id, messages.c.quota_day == day)
                           .values(quota_day=None)).rowcount
    return day if cleared == 1 else None


def sweep_replies() -> dict[str, int]:
    """Re-enqueue replies that were never queued or whose attempt died; fail those out of attempts."""
    cfg = current_app.config
    now = utcnow()
    grace = timedelta(seconds=cfg["REPLY_SWEEP_GRACE"])
    abandoned = or_(
        and_(messages.c.lease_token.is_not(None), messages.c.lease_expires_at < now),  # the attempt died
        and_(messages.c.lease_token.is_(None),  # never picked up, or its retry was lost with the queue
             or_(messages.c.lease_expires_at < now - grace,
                 and_(messages.c.lease_expires_at.is_(None), messages.c.created_at < now - grace))),
    )
    with db.engine.begin() as conn:
        rows = conn.execute(select(messages.c.id, messages.c.attempts, messages.c.lease_token)
                            .where(messages.c.status == "pending", abandoned).limit(500)).all()
    counts = {"requeued": 0, "failed": 0}
    for row in rows:
        if row.attempts >= cfg["REPLY_MAX_ATTEMPTS"]:
            if _fail_exhausted(row.id, row.lease_token, row.attempts):
                counts["failed"] += 1
            continue
        if _mark_requeued(row.id, row.lease_token, now):
            enqueue_reply(row.id)
            counts["requeued"] += 1
    if any(counts.values()):
        log.info("sweeper: %s", counts)
    return counts


def _mark_requeued(reply_id: int, lease_token: str | None, now: datetime) -> bool:
    """Mark a swept reply handled for one grace period, so the next sweep does not queue it again meanwhile."""
    same_lease = messages.c.lease_token.is_(None) if lease_token is None else messages.c.lease_token == lease_token
    with db.engine.begin() as conn:
        return conn.execute(update(messages).where(messages.c.id == reply_id, messages.c.status == "pending",
                                                   same_lease)
                            .values(lease_token=None, lease_expires_at=now)).rowcount == 1


def _fail_exhausted(reply_id: int, lease_token: str | None, attempts: int) -> bool:
    """End a reply that has used all its attempts as failed (through the normal finish path)."""
    token = lease_token or uuid.uuid4().hex
    with db.engine.begin() as conn:
        if lease_token is None:
            conn.execute(update(messages).where(messages.c.id == reply_id, messages.c.lease_token.is_(None))
                         .values(lease_token=token))
        row = conn.execute(select(messages.c.reply_to, messages.c.chatroom_id)
                           .where(messages.c.id == reply_id)).one()
    claim = Claim(reply_id, token, attempts, row.reply_to, row.chatroom_id)
    error = {"code": "retries_exhausted", "message": f"No answer after {attempts} attempts; retry the message."}
    return finish(claim, "failed", error=error) == "failed"
