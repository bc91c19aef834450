"""Housekeeping of rows that only matter for a while."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from gemini_backend.extensions import db
from gemini_backend.models import IdempotencyKey, OtpChallenge, RevokedToken, utcnow


def purge_expired_rows() -> dict[str, int]:
    """Delete expired OTPs (kept a day for the hourly send limit), expired revocations and old idempotency keys."""
    now = utcnow()
    counts = {
        "otp_challenges": db.session.execute(
            delete(OtpChallenge).where(OtpChallenge.expires_at < now - timedelta(days=1))).rowcount,
        "revoked_tokens": db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now)).rowcount,
        "idempotency_keys": db.session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < now - timedelta(hours=24))).rowcount,
    }
    db.session.commit()
    return counts
