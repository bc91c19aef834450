"""Answering messages (the worker side): claim a pending reply, ask Gemini, store exactly one outcome.

Guarantees: a reply is worked on only under a lease taken by a conditional UPDATE, so two consumers never
both answer it; it is written only by the lease holder, only while pending, so it ends exactly once; a
crashed attempt's lease expires and the sweeper hands the reply to another consumer.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, or_, select, update

from gemini_backend.ai import AiBlocked, AiError, GeminiSettings, Turn, get_client
from gemini_backend.caching import drop_chatroom_list
from gemini_backend.extensions import cache, db
from gemini_backend.models import Chatroom, Message, utcnow
from gemini_backend.services import quota, streams
from gemini_backend.services.notify import announce_reply_finished

log = logging.getLogger(__name__)
HISTORY_ROWS = 400  # newest rows read for context; the token budget trims further


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
    user_id: int


def lease_seconds() -> int:
    """How long an attempt may run before another consumer may take the reply over."""
    cfg = current_app.config
    return cfg["REPLY_LEASE_SECONDS"] or int(max(30, cfg["GEMINI_TIMEOUT"] + 15))


def claim_reply(reply_id: int) -> Claim | None:
    """Take the lease if the reply is pending and nobody holds a live lease; None otherwise."""
    now = utcnow()
    token = uuid.uuid4().hex
    taken = db.session.execute(update(Message).where(
        Message.id == reply_id, Message.role == "model", Message.status == "pending",
        or_(Message.lease_token.is_(None), Message.lease_expires_at < now),
    ).values(lease_token=token, lease_expires_at=now + timedelta(seconds=lease_seconds()),
             attempts=Message.attempts + 1)).rowcount
    db.session.commit()
    if taken != 1:
        return None
    row = db.session.execute(select(Message.attempts, Message.reply_to, Message.chatroom_id, Chatroom.user_id)
                             .join(Chatroom, Chatroom.id == Message.chatroom_id).where(Message.id == reply_id)).one()
    return Claim(reply_id, token, row.attempts, row.reply_to, row.chatroom_id, row.user_id)


def load_history(claim: Claim) -> list[Turn]:
    """The room's turns up to the user message, leaving out failed/blocked/unanswered exchanges."""
    rows = db.session.execute(
        select(Message.id, Message.role, Message.content, Message.status, Message.reply_to)
        .where(Message.chatroom_id == claim.room_id, Message.id <= claim.user_message_id)
        .order_by(Message.id.desc()).limit(HISTORY_ROWS)).all()
    answered = {r.reply_to for r in rows if r.role == "model" and r.status == "complete"}
    turns = [Turn(r.role, r.content) for r in reversed(rows)
             if (r.role == "model" and r.status == "complete")
             or (r.role == "user" and (r.id in answered or r.id == claim.user_message_id))]
    db.session.commit()  # release the connection before the slow call
    return turns


def generate_reply(reply_id: int) -> str:
    """Produce the reply if it is still pending; returns the outcome (complete/failed/blocked/skipped/retry)."""
    claim = claim_reply(reply_id)
    if claim is None:
        return "skipped"
    settings = GeminiSettings.from_config(current_app.config)
    streams.publish_start(reply_id, claim.attempt)
    try:
        text = _answer(claim, settings, load_history(claim))
    except AiBlocked as exc:
        return finish(claim, "blocked", error={"code": exc.code, "message": exc.message})
    except AiError as exc:
        max_attempts = current_app.config["REPLY_MAX_ATTEMPTS"]
        if exc.transient and claim.attempt < max_attempts:
            delay = retry_delay(claim.attempt)
            release_for_retry(claim, delay)
            log.info("reply %s attempt %s: %s; retrying in %.1fs", reply_id, claim.attempt, exc.code, delay)
            raise RetryLater(delay) from exc
        if exc.transient:
            message = f"Gemini kept failing after {claim.attempt} attempts ({exc.message})"
            return finish(claim, "failed", error={"code": exc.code, "message": message})
        return finish(claim, "failed", error={"code": exc.code, "message": exc.message})
    return finish(claim, "complete", content=text)


def _answer(claim: Claim, settings: GeminiSettings, history: list[Turn]) -> str:
    """Gemini's answer, or, with GEMINI_RESPONSE_CACHE_TTL set, the stored answer to an identical request."""
    ttl = current_app.config["GEMINI_RESPONSE_CACHE_TTL"]
    if ttl <= 0:
        return _ask_gemini(claim, settings, history)
    key = response_cache_key(settings, history)
    cached = _cache_get(key)
    if cached:
        streams.publish_delta(claim.reply_id, claim.attempt, cached)
        return cached
    text = _ask_gemini(claim, settings, history)
    _cache_set(key, text, ttl)
    return text


def response_cache_key(settings: GeminiSettings, history: list[Turn]) -> str:
    """Identical requests (model, system instruction, whole history) share a key."""
    material = json.dumps([settings.model, settings.system_instruction, settings.history_token_budget,
                           [[t.role, t.text] for t in history]], ensure_ascii=False)
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


def _ask_gemini(claim: Claim, settings: GeminiSettings, history: list[Turn]) -> str:
    """Stream the answer, publishing chunks and renewing the lease as they arrive; the whole text."""
    parts: list[str] = []
    renew_every = lease_seconds() / 3
    last_renewal = time.monotonic()
    for chunk in get_client(settings).stream(history):
        parts.append(chunk)
        streams.publish_delta(claim.reply_id, claim.attempt, chunk)
        if time.monotonic() - last_renewal > renew_every:
            renew_lease(claim)
            last_renewal = time.monotonic()
    return "".join(parts)


def renew_lease(claim: Claim) -> None:
    """Extend the lease of a long-running attempt."""
    db.session.execute(update(Message).where(Message.id == claim.reply_id, Message.lease_token == claim.token)
                       .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds())))
    db.session.commit()


def retry_delay(attempt: int) -> float:
    """Exponential backoff: REPLY_RETRY_DELAY x 2^(attempt-1), at most 5 minutes."""
    return min(300.0, current_app.config["REPLY_RETRY_DELAY"] * 2 ** (attempt - 1))


def release_for_retry(claim: Claim, delay: float) -> None:
    """Give up the lease; the sweeper leaves the reply alone until the retry is due."""
    db.session.execute(update(Message).where(Message.id == claim.reply_id, Message.lease_token == claim.token)
                       .values(lease_token=None, lease_expires_at=utcnow() + timedelta(seconds=delay)))
    db.session.commit()


def finish(claim: Claim, status: str, content: str = "", error: dict[str, Any] | None = None) -> str:
    """Store the outcome if this attempt still holds the lease; give the quota unit back on failure."""
    now = utcnow()
    written = db.session.execute(update(Message).where(
        Message.id == claim.reply_id, Message.lease_token == claim.token, Message.status == "pending",
    ).values(status=status, content=content, error=error, completed_at=now, lease_token=None,
             lease_expires_at=None)).rowcount
    if written != 1:
        db.session.rollback()
        log.warning("reply %s: lease lost before finishing; another attempt owns it", claim.reply_id)
        return "skipped"
    db.session.execute(update(Chatroom).where(Chatroom.id == claim.room_id)
                       .values(last_message_at=now, last_activity_at=now))
    refund_day = _take_back_quota_day(claim.user_message_id) if status in ("failed", "blocked") else None
    db.session.commit()
    if refund_day:
        quota.refund(claim.user_id, refund_day)
    drop_chatroom_list(claim.user_id)
    streams.publish_end(claim.reply_id, status)
    announce_reply_finished(claim.reply_id, status)
    log.info("reply %s %s after %s attempt(s)", claim.reply_id, status, claim.attempt)
    return status


def _take_back_quota_day(user_message_id: int) -> str | None:
    """Clear the user message's quota day (once) and return it, so its unit is given back exactly once."""
    day = db.session.scalar(select(Message.quota_day).where(Message.id == user_message_id))
    if day is None:
        return None
    cleared = db.session.execute(update(Message).where(Message.id == user_message_id, Message.quota_day == day)
                                 .values(quota_day=None)).rowcount
    return day if cleared == 1 else None


def sweep_replies() -> dict[str, int]:
    """Re-enqueue replies that were never queued or whose attempt died; fail those out of attempts."""
    from gemini_backend.services.messages import enqueue_reply
    cfg = current_app.config
    now = utcnow()
    grace = timedelta(seconds=cfg["REPLY_SWEEP_GRACE"])
    abandoned = or_(
        and_(Message.lease_token.is_not(None), Message.lease_expires_at < now),  # the attempt died
        and_(Message.lease_token.is_(None),  # never picked up, or its retry was lost with the queue
             or_(Message.lease_expires_at < now - grace,
                 and_(Message.lease_expires_at.is_(None), Message.created_at < now - grace))),
    )
    rows = db.session.execute(select(Message.id, Message.attempts, Message.lease_token)
                              .where(Message.status == "pending", abandoned).limit(500)).all()
    db.session.commit()
    counts = {"requeued": 0, "failed": 0}
    for row in rows:
        if row.attempts >= cfg["REPLY_MAX_ATTEMPTS"]:
            if _fail_exhausted(row.id, row.lease_token, row.attempts):
                counts["failed"] += 1
            continue
        # Mark it handled for one grace period, so the next sweep does not queue it again meanwhile.
        released = db.session.execute(update(Message).where(
            Message.id == row.id, Message.status == "pending",
            Message.lease_token.is_(None) if row.lease_token is None else Message.lease_token == row.lease_token,
        ).values(lease_token=None, lease_expires_at=now)).rowcount
        db.session.commit()
        if released == 1:
            enqueue_reply(row.id)
            counts["requeued"] += 1
    if any(counts.values()):
        log.info("sweeper: %s", counts)
    return counts


def _fail_exhausted(reply_id: int, lease_token: str | None, attempts: int) -> bool:
    """End a reply that has used all its attempts as failed (through the normal finish path)."""
    token = lease_token or uuid.uuid4().hex
    if lease_token is None:
        db.session.execute(update(Message).where(Message.id == reply_id, Message.lease_token.is_(None))
                           .values(lease_token=token))
        db.session.commit()
    row = db.session.execute(select(Message.reply_to, Message.chatroom_id, Chatroom.user_id)
                             .join(Chatroom, Chatroom.id == Message.chatroom_id).where(Message.id == reply_id)).one()
    claim = Claim(reply_id, token, attempts, row.reply_to, row.chatroom_id, row.user_id)
    error = {"code": "retries_exhausted", "message": f"No answer after {attempts} attempts; retry the message."}
    return finish(claim, "failed", error=error) == "failed"
