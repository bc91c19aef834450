"""Cache keys and the named helpers that drop them; every write path that changes cached data calls one."""
from __future__ import annotations

import logging
import os

from flask import current_app, g, has_app_context

from gemini_backend.extensions import cache

log = logging.getLogger(__name__)


def chatroom_list_version_key(user_id: int) -> str:
    """Cache key of the current version of one user's chatroom list."""
    return f"chatrooms:user:{user_id}:version"


def user_state_key(user_id: int) -> str:
    """Cache key of one user's tier (read on every message post)."""
    return f"user-state:{user_id}"


def _delete(key: str) -> None:
    # A cache that is down must not fail the write that already committed; entries expire by TTL.
    try:
        cache.delete(key)
    except Exception as exc:
        log.warning("cache delete of %s failed: %s", key, exc)


def drop_chatroom_list(user_id: int) -> None:
    """Forget a user's cached chatroom list (create, rename, delete, new message, reply finished).

    A new random version, not a delete: a reader that loaded the old list from the database just
    before this write then stores it under the old version's key, which nobody reads again.
    """
    try:
        cache.set(chatroom_list_version_key(user_id), new_version(), timeout=version_ttl())
    except Exception as exc:
        log.warning("cache invalidation for user %s failed: %s", user_id, exc)


def new_version() -> str:
    """A fresh random list version (os.urandom: a uuid4 object costs more and adds nothing here)."""
    return os.urandom(12).hex()


def version_ttl() -> int:
    """How long a list version lives: past every list cached under it."""
    return 2 * current_app.config["CHATROOM_CACHE_TTL"]


def drop_user_state(user_id: int) -> None:
    """Forget a user's cached tier and revocation state (subscription change, grant or revoke, logout)."""
    if has_app_context():
        g.get("user_states", {}).pop(user_id, None)
    _delete(user_state_key(user_id))
