"""Accounts: sign-up, password and OTP login, password reset and change."""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gemini_backend.errors import AppError, Conflict, InvalidField, Unauthorized
from gemini_backend.extensions import db
from gemini_backend.models import User
from gemini_backend.services import otp
from gemini_backend.services.passwords import hash_password, needs_rehash, verify_password
from gemini_backend.services.tokens import issue_tokens, revoke_all

log = logging.getLogger(__name__)


def mask_phone(phone: str) -> str:
    """The number with all but its last 3 digits hidden, for logs."""
    return phone[:2] + "*" * max(0, len(phone) - 5) + phone[-3:]


def find_user(phone: str) -> User | None:
    """The account of a normalised phone number, if any."""
    return db.session.scalars(select(User).where(User.phone == phone)).first()


def sign_up(phone: str, name: str | None = None, password: str | None = None, email: str | None = None) -> User:
    """Create an account; 409 phone_taken when the number already has one."""
    user = User(phone=phone, name=name, email=email, password_hash=hash_password(password) if password else None)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("An account with this phone number already exists.", error="phone_taken") from None
    return user


def send_login_code(phone: str, purpose: str) -> dict[str, Any]:
    """Send a code for purpose; same answer whether or not the number has an account."""
    return otp.send_code(phone, purpose, account_exists=find_user(phone) is not None)


def login_with_code(phone: str, code: str) -> dict[str, Any]:
    """Spend a login code and start a session; an unknown number is the same otp_invalid as a wrong code."""
    user = find_user(phone)
    if user is None:
        raise otp.OtpInvalid()
    otp.verify_code(phone, "login", code)
    return issue_tokens(user)


def login_with_password(phone: str, password: str) -> dict[str, Any]:
    """Check the password (constant work for unknown numbers) and start a session."""
    user = find_user(phone)
    if not verify_password(user.password_hash if user else None, password) or user is None:
        log.info("password login refused for %s", mask_phone(phone))
        raise Unauthorized("Wrong phone number or password.", error="invalid_credentials")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        db.session.commit()
    return issue_tokens(user)


def reset_password(phone: str, code: str, new_password: str) -> None:
    """Spend a reset code, set the new password and revoke every earlier token."""
    user = find_user(phone)
    if user is None:
        raise otp.OtpInvalid()
    otp.verify_code(phone, "reset", code)
    user.password_hash = hash_password(new_password)
    db.session.commit()
    revoke_all(user)


def change_password(user: User, new_password: str, current_password: str | None,
                    session_id: str | None) -> dict[str, Any]:
    """Set a new password (the current one is required when set) and revoke every other session; the calling
    session goes on with a fresh pair (its access token keeps working until it expires)."""
    if user.password_hash is not None:
        if not current_password:
            raise InvalidField("current_password", "Required when a password is set.",
                               message="Send current_password to change an existing password.")
        if not verify_password(user.password_hash, current_password):
            raise AppError("The current password is wrong.", status=400, error="wrong_password")
    user.password_hash = hash_password(new_password)
    db.session.commit()
    revoke_all(user, keep_session=session_id)
    return issue_tokens(user, sid=session_id)
