"""JWT sessions: issuing token pairs, rotation, and the revocation check flask-jwt-extended calls.

Every login starts a session id (`sid`) shared by its access and refresh tokens. Revocation works on
three levels, all stored in PostgreSQL so they survive a Redis restart: a token id (a rotated refresh
token), a session id (logout), and the user's token version (password change/reset, logout everywhere).
The per-user revocation state is cached so that checking a token costs no query on the hot path.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from flask import current_app, g
from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt_identity
from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.exc import IntegrityError

from gemini_backend.caching import drop_user_state, user_state_key
from gemini_backend.errors import Unauthorized
from gemini_backend.extensions import cache, db, jwt
from gemini_backend.models import RevokedToken, User, tier_of, utcnow


def issue_tokens(user: User, sid: str | None = None) -> dict[str, Any]:
    """A fresh access + refresh pair for user (a new session unless sid is given), as the Tokens object."""
    sid = sid or uuid.uuid4().hex
    claims = {"ver": user.token_version, "sid": sid}
    identity = str(user.id)
    access = create_access_token(identity=identity, additional_claims=claims)
    refresh = create_refresh_token(identity=identity, additional_claims=claims)
    return {
        "access_token": access,
        "token": access,
        "token_type": "bearer",
        "expires_in": int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]),
        "refresh_token": refresh,
        "user": user,
    }


def rotate_refresh_token(user: User, payload: dict[str, Any]) -> dict[str, Any]:
    """Spend the presented refresh token and issue a new pair in the same session.

    A refresh token presented twice means it leaked (or a client raced itself): the whole family of the
    user's tokens is revoked, as OAuth 2.0 Security BCP advises for refresh token reuse.
    """
    if not _revoke_id(payload["jti"], "jti", user.id, payload["exp"]):
        _refresh_token_reused(user.id)
        raise Unauthorized("This refresh token was already used; log in again.", error="token_revoked")
    return issue_tokens(user, sid=payload.get("sid"))


def _refresh_token_reused(user_id: int) -> None:
    user = db.session.get(User, user_id)
    if user is not None:
        revoke_all(user)


def revoke_session(payload: dict[str, Any]) -> None:
    """Revoke the session of the presented token (its access and refresh tokens)."""
    user_id = int(payload["sub"])
    refresh_lifetime = int(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"])
    exp = int(payload.get("iat", payload["exp"])) + refresh_lifetime
    _revoke_id(payload.get("sid") or payload["jti"], "sid" if payload.get("sid") else "jti", user_id, exp)


def revoke_all(user: User, keep_session: str | None = None) -> None:
    """Revoke every token the user holds by bumping the token version; keep_session: the calling session's
    access tokens go on working until they expire (its refresh token does not: issue a fresh pair)."""
    db.session.execute(update(User).where(User.id == user.id).values(token_version=User.token_version + 1,
                                                                     kept_session_id=keep_session))
    db.session.commit()
    db.session.refresh(user)
    drop_user_state(user.id)


def _revoke_id(token_id: str, kind: str, user_id: int, exp: int) -> bool:
    """Record a revoked id; False when it was already revoked."""
    expires_at = datetime.fromtimestamp(int(exp), tz=timezone.utc)
    db.session.add(RevokedToken(jti=token_id, kind=kind, user_id=user_id, expires_at=expires_at))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    finally:
        drop_user_state(user_id)
    return True


def user_state(user_id: int) -> dict[str, Any] | None:
    """The user's tier, token version and logged-out sessions: cached, rebuilt from the database on a miss."""
    memo = g.setdefault("user_states", {})  # the revocation check and the route share one read
    if user_id in memo:
        return memo[user_id]
    key = user_state_key(user_id)
    try:
        state = cache.get(key)
    except Exception:  # Redis down: the database is the source of truth
        state = None
    if state is not None:
        memo[user_id] = state
        return state
    # One statement on a connection of its own (the request's session, if it has a transaction, is not touched):
    # the user's row, joined to the sessions it logged out.
    with db.engine.connect() as conn:
        rows = conn.execute(_USER_STATE, {"user_id": user_id, "now": utcnow()}).all()
    if not rows:
        return None
    user = rows[0]
    state = {"tier": tier_of(user.is_pro, user.pro_override), "ver": user.token_version,
             "revoked_sessions": sorted(row.jti for row in rows if row.jti is not None),
             "kept_session": user.kept_session_id}
    try:
        cache.set(key, state, timeout=current_app.config["CHATROOM_CACHE_TTL"])
    except Exception:
        pass
    memo[user_id] = state
    return state


_users, _revoked = User.__table__, RevokedToken.__table__
_USER_STATE = (
    select(_users.c.is_pro, _users.c.pro_override, _users.c.token_version, _users.c.kept_session_id, _revoked.c.jti)
    .select_from(_users.outerjoin(_revoked, and_(_revoked.c.user_id == _users.c.id, _revoked.c.kind == "sid",
                                                 _revoked.c.expires_at > bindparam("now"))))
    .where(_users.c.id == bindparam("user_id"))
)


@jwt.token_in_blocklist_loader
def is_token_revoked(jwt_header: dict, payload: dict) -> bool:
    """flask-jwt-extended hook: refuse tokens of a revoked id, session or older token version."""
    try:
        user_id = int(payload["sub"])
    except (KeyError, TypeError, ValueError):
        return True
    state = user_state(user_id)
    if state is None:
        return True
    if payload.get("sid") in state["revoked_sessions"]:
        return True
    if payload.get("ver", -1) != state["ver"] and not _kept_access_token(payload, state):
        return True
    if payload.get("type") == "refresh" and db.session.get(RevokedToken, payload["jti"]) is not None:
        # A spent refresh token came back: it leaked, so the user's whole token family goes.
        _refresh_token_reused(user_id)
        return True
    return False


def _kept_access_token(payload: dict, state: dict[str, Any]) -> bool:
    """An access token of the session that went on through the last version bump (a password change)."""
    kept = state.get("kept_session")
    return (kept is not None and payload.get("type") == "access" and payload.get("sid") == kept
            and payload.get("ver") == state["ver"] - 1)


def current_user_id() -> int:
    """The signed-in user's id, from the request's verified access token."""
    return int(get_jwt_identity())


def current_account() -> User:
    """The signed-in user's row, loaded by the routes that need it (not on every authenticated request)."""
    user = db.session.get(User, current_user_id())
    if user is None:  # deleted after the revocation check of this very request
        raise Unauthorized("The token's user no longer exists.", error="token_invalid")
    return user
