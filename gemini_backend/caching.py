"""Cache keys and the named helpers that drop them; every write path that changes cached data calls one."""
from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable

from cachelib.redis_base import BaseRedisCache
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


def drop_chatroom_list_command(user_id: int) -> tuple[Any, ...] | None:
    """drop_chatroom_list as one raw Redis command, for a caller that sends it along with others; None when the
    cache is not on Redis."""
    backend = cache.cache
    if not isinstance(backend, BaseRedisCache):
        return None
    key = f"{backend.key_prefix}{chatroom_list_version_key(user_id)}"
    return ("SET", key, backend.serializer.dumps(new_version()), "EX", version_ttl())


def new_version() -> str:
    """A fresh random list version (os.urandom: a uuid4 object costs more and adds nothing here)."""
    return os.urandom(12).hex()


def version_ttl() -> int:
    """How long a list version lives: past every list cached under it."""
    return 2 * current_app.config["CHATROOM_CACHE_TTL"]


def prefetch(keys_for: Callable[[int], list[str]]) -> Callable:
    """Route decorator: the request's first cache read for its user (the token check) also reads keys_for(user).

    One round trip instead of one per key, on the hottest authenticated read.
    """
    def decorator(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.cache_prefetch = keys_for
            return fn(*args, **kwargs)
        return wrapper
    return decorator


def read_many(user_id: int, *keys: str) -> list[Any]:
    """Values of keys (None when missing), from what this request prefetched when it has them all."""
    fetched: dict[str, Any] = g.get("cache_fetched", {})
    if all(key in fetched for key in keys):
        return [fetched.pop(key) for key in keys]
    extra_for = g.pop("cache_prefetch", None)
    extra = [key for key in extra_for(user_id) if key not in keys] if extra_for else []
    values = cache.get_many(*keys, *extra)
    g.cache_fetched = dict(zip(extra, values[len(keys):]))
    return values[:len(keys)]


def drop_user_state(user_id: int) -> None:
    """Forget a user's cached tier and revocation state (subscription change, grant or revoke, logout)."""
    if has_app_context():
        g.get("user_states", {}).pop(user_id, None)
    _delete(user_state_key(user_id))
