"""One-time codes: issue, throttle and verify, bound to (phone, purpose), stored only as a keyed hash."""
from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from datetime import timedelta

from flask import current_app
from limits import parse
from sqlalchemy import select, update

from gemini_backend.errors import AppError, TooManyRequests
from gemini_backend.extensions import db, limiter
from gemini_backend.models import OtpChallenge, utcnow
from gemini_backend.services.sms import deliver_code

PURPOSES = ("login", "reset", "delete")
# Whoever asks: one code a minute per (phone, purpose), so a login code and then a reset code both go out;
# five an hour per phone over all purposes.
PER_PURPOSE_LIMIT = parse("1/minute")
PER_PHONE_LIMIT = parse("5/hour")


class OtpInvalid(AppError):
    status, error, message = 400, "otp_invalid", "The code is wrong, expired or already used; request a new one."


def _code_hash(phone: str, purpose: str, code: str) -> str:
    secret = current_app.config["OTP_SECRET"].encode()
    return hmac.new(secret, f"{phone}|{purpose}|{code}".encode(), hashlib.sha256).hexdigest()


def throttle_send(phone: str, purpose: str) -> None:
    """Count one send for (phone, purpose); 429 with Retry-After when over a limit (known or unknown number
    alike)."""
    strategy = limiter.limiter
    for item, identifiers in ((PER_PURPOSE_LIMIT, ("otp-send", phone, purpose)),
                              (PER_PHONE_LIMIT, ("otp-send", phone))):
        # hit() is one atomic increment-and-compare, so concurrent sends cannot both slip through.
        if not strategy.hit(item, *identifiers):
            reset_at = strategy.get_window_stats(item, *identifiers).reset_time
            retry = max(1, math.ceil(reset_at - time.time()))
            raise TooManyRequests(f"Too many codes requested for this number; try again in {retry} seconds.",
                                  error="otp_rate_limited", headers={"Retry-After": str(retry)})


def send_code(phone: str, purpose: str, account_exists: bool) -> dict:
    """Throttle, then issue and deliver a code when the account exists; the answer never tells which."""
    throttle_send(phone, purpose)
    ttl = current_app.config["OTP_TTL_SECONDS"]
    code = f"{secrets.randbelow(10**6):06d}"
    body = {"message": "If the number can receive codes, one is on its way.", "expires_in": ttl}
    if not account_exists:
        # Same work and same shape as a real send; the code is never stored, so it can never verify.
        if current_app.config["OTP_DELIVERY"] == "response":
            body["otp"] = code
        return body
    now = utcnow()
    # A new code replaces the earlier ones for the same purpose.
    db.session.execute(update(OtpChallenge).where(
        OtpChallenge.phone == phone, OtpChallenge.purpose == purpose, OtpChallenge.consumed_at.is_(None)
    ).values(consumed_at=now))
    db.session.add(OtpChallenge(phone=phone, purpose=purpose, code_hash=_code_hash(phone, purpose, code),
                                expires_at=now + timedelta(seconds=ttl)))
    db.session.commit()
    echoed = deliver_code(phone, code, purpose)
    if echoed is not None:
        body["otp"] = echoed
    return body


def verify_code(phone: str, purpose: str, code: str, spend: bool = True) -> None:
    """Spend the live code for (phone, purpose) if it matches; raise OtpInvalid otherwise.

    Wrong guesses are counted in the database (surviving a Redis restart); the 5th kills the code.
    spend=False checks a right code without spending it: for a caller whose own transaction deletes it.
    """
    now = utcnow()
    max_attempts = current_app.config["OTP_MAX_ATTEMPTS"]
    challenge = db.session.scalars(
        select(OtpChallenge).where(OtpChallenge.phone == phone, OtpChallenge.purpose == purpose,
                                   OtpChallenge.consumed_at.is_(None), OtpChallenge.expires_at > now,
                                   OtpChallenge.attempts < max_attempts)
        .order_by(OtpChallenge.created_at.desc()).limit(1)
    ).first()
    if challenge is None:
        raise OtpInvalid()
    if not hmac.compare_digest(challenge.code_hash, _code_hash(phone, purpose, code)):
        db.session.execute(update(OtpChallenge).where(OtpChallenge.id == challenge.id)
                           .values(attempts=OtpChallenge.attempts + 1))
        db.session.commit()
        raise OtpInvalid()
    if not spend:
        return
    # Conditional update: of two concurrent correct guesses only one spends the code.
    spent = db.session.execute(update(OtpChallenge).where(
        OtpChallenge.id == challenge.id, OtpChallenge.consumed_at.is_(None),
        OtpChallenge.attempts < max_attempts).values(consumed_at=now)).rowcount
    db.session.commit()
    if spent != 1:
        raise OtpInvalid()
