"""Gemini tokens a user's replies used: the totals of GET /user/usage, summed from each reply's stored `usage`."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select

from gemini_backend.extensions import db
from gemini_backend.models import Chatroom, Message, utcnow


def token_totals(user_id: int, now: datetime | None = None) -> dict[str, int]:
    """{tokens_today, tokens_this_month}: total tokens of the user's replies finished since 00:00 UTC and since the
    first of the month (UTC); replies of deleted rooms are gone with them."""
    now = (now or utcnow()).astimezone(timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    tokens = func.coalesce(Message.usage["total_tokens"].as_integer(), 0)
    row = db.session.execute(
        select(func.coalesce(func.sum(tokens).filter(Message.completed_at >= day), 0),
               func.coalesce(func.sum(tokens), 0))
        .join(Chatroom, Chatroom.id == Message.chatroom_id)
        .where(Chatroom.user_id == user_id, Message.role == "model", Message.completed_at >= month)).one()
    return {"tokens_today": int(row[0]), "tokens_this_month": int(row[1])}
