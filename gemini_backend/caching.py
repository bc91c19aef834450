"""Cache keys and the named helpers that drop them; every write path that changes cached data calls one."""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from typing import Any, Callable

from cachelib.redis_base import BaseRedisCache
from flask import current_app, g, has_app_context

from gemini_backend.extensions import cache
from gemini_backend.schemas.chat import ChatroomSchema

log = logging.getLogger(__name__)


def chatroom_list_version_key(user_id: int) -> str:
    """Cache key of the current version of one user's chatroom list."""
    return f"chatrooms:user:{user_id}:version"


@functools.cache
def chatroom_list_shape() -> str:
    """A short digest of the Chatroom JSON's fields: a deploy that changes them reads and writes new keys, so it
    never serves a body rendered by the code before it."""
    fields = ",".join(sorted(ChatroomSchema().fields))
    return hashlib.sha256(fields.encode()).hexdigest()[:8]


def chatroom_list_key(user_id: int) -> str:
    """Cache key of one user's chatroom list: (version, encoded JSON body)."""
    return f"chatrooms:user:{user_id}:list:{chatroom_list_shape()}"


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
        cache.set(chatroom_list_version_key(user_id), new_version(), timeout=_version_ttl())
    except Exception as exc:
        log.warning("cache invalidation for user %s failed: %s", user_id, exc)


def drop_chatroom_list_command(user_id: int) -> tuple[Any, ...] | None:
    """drop_chatroom_list as one raw Redis command, for a caller that sends it along with others; None when the
    cache is not on Redis."""
    backend = cache.cache
    if not isinstance(backend, BaseRedisCache):
        return None
    key = f"{backend.key_prefix}{chatroom_list_version_key(user_id)}"
    return ("SET", key, backend.serializer.dumps(new_version()), "EX", _version_ttl())


def new_version() -> str:
    """A fresh random list version (os.urandom: a uuid4 object costs more and adds nothing here)."""
    return os.urandom(12).hex()


def _version_ttl() -> int:
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


def chatroom_list_keys(user_id: int) -> list[str]:
    """The keys a chatroom list read needs: the list's current version and the cached list."""
    return [chatroom_list_version_key(user_id), chatroom_list_key(user_id)]


def cached_chatroom_list(user_id: int, render: Callable[[], bytes]) -> tuple[bytes, bool]:
    """The user's encoded list body from the cache, or render() it and store it; (body, hit).

    The list is stored with the version it was rendered under and counts only while that version is current,
    so a render that raced a write is never served. Redis down: render() only.
    """
    if current_app.config["CHATROOM_CACHE_TTL"] <= 0:  # 0 turns the list cache off
        return render(), False
    version_key = chatroom_list_version_key(user_id)
    try:
        version, cached = read_many(user_id, *chatroom_list_keys(user_id))
        if version is None:
            cache.add(version_key, new_version(), timeout=_version_ttl())
            version = cache.get(version_key)
    except Exception as exc:
        log.warning("chatroom list cache unavailable: %s", exc)
        return render(), False
    if isinstance(cached, tuple) and len(cached) == 2 and cached[0] == version:
        return cached[1], True
    body = render()
    try:
        cache.set(chatroom_list_key(user_id), (version, body), timeout=current_app.config["CHATROOM_CACHE_TTL"])
    except Exception as exc:
        log.warning("chatroom list cache write failed: %s", exc)
    return body, False


def drop_user_state(user_id: int) -> None:
    """Forget a user's cached tier and revocation state (subscription change, grant or revoke, logout)."""
    if has_app_context():
        g.get("user_states", {}).pop(user_id, None)
    _delete(user_state_key(user_id))
