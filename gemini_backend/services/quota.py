"""Message quota: Basic's daily limit per UTC calendar day, Pro's per-minute abuse throttle.

The counters live in Flask-Limiter's `limits` storage (`extensions.limiter.storage`: Redis in services mode,
the SQLite storage when embedded), so every web worker and the Huey consumer share them. Each counter is a
fixed window whose key names the window (the UTC date, or the minute), so Basic's window is exactly the UTC
calendar day. A reservation is one atomic increment; one that lands over the limit is given back at once, so
the counter never stays above the limit and exactly `BASIC_DAILY_LIMIT` posts win under any concurrency.

Pro messages are counted per day too (no limit), so `used_today` means the same for both tiers. The
X-RateLimit-* headers describe the limit that binds: Basic's daily quota, Pro's per-minute throttle.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import redis

from flask import current_app

from gemini_backend.errors import TooManyRequests
from gemini_backend.extensions import limiter

# Counters outlive their window a little, so a refund that races midnight still finds its day.
_GRACE_SECONDS = 3600


@dataclass(frozen=True)
class QuotaTicket:
    """One unit taken from a user's quota on `day` (UTC, YYYY-MM-DD); plain data, so a Huey task can refund it."""

    user_id: int
    day: str
    tier: str
    used: int
    daily_limit: int | None = None
    throttle_limit: int | None = None
    throttle_remaining: int | None = None
    throttle_reset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ticket as JSON-safe plain data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "QuotaTicket":
        """A ticket back from to_dict()'s output."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def usage(self) -> dict[str, Any]:
        """The Usage object right after this reservation (no storage round trip)."""
        return _usage_object(self.tier, self.day, self.used, self.daily_limit,
                             self.throttle_limit, self.throttle_remaining, self.throttle_reset)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def day_of(at: datetime) -> str:
    """The UTC calendar day of a moment, as the quota counts days (YYYY-MM-DD)."""
    return at.astimezone(timezone.utc).date().isoformat()  # isoformat, not strftime: this runs on every post


def _next_midnight_of(day: str) -> datetime:
    # fromisoformat, not strptime: this runs on every message post and strptime is slow.
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc) + timedelta(days=1)


def _usage_object(tier: str, day: str, used: int, daily_limit: int | None, throttle_limit: int | None = None,
                  throttle_remaining: int | None = None, throttle_reset: int | None = None) -> dict[str, Any]:
    """The Usage object, plus Pro's `throttle` {limit, remaining, reset epoch} when on (for the X-RateLimit-*
    headers; UsageSchema leaves it out of the body)."""
    remaining = None if daily_limit is None else max(0, daily_limit - used)
    result: dict[str, Any] = {"tier": tier, "daily_limit": daily_limit, "used_today": used, "remaining": remaining,
                              "resets_at": _next_midnight_of(day)}
    if throttle_limit is not None:
        result["throttle"] = {"limit": throttle_limit, "remaining": throttle_remaining, "reset": throttle_reset}
    return result


def _daily_key(user_id: int, day: str) -> str:
    return f"gb-quota/day/{day}/{user_id}"


def _minute_key(user_id: int, minute: int) -> str:
    return f"gb-quota/minute/{minute}/{user_id}"


def reserve_message(user_id: int, tier: str, at: datetime | None = None) -> QuotaTicket:
    """Take one unit of today's quota (Basic) or of this minute's throttle (Pro); 429 taking nothing when over."""
    now = at or utc_now()
    day = day_of(now)
    reset = _next_midnight_of(day)
    ttl = math.ceil((reset - now).total_seconds()) + _GRACE_SECONDS
    key = _daily_key(user_id, day)
    storage = limiter.storage
    if tier == "pro":
        used, throttle = _count_pro_message(user_id, key, ttl, now)
        return QuotaTicket(user_id, day, "pro", used, None, *throttle)
    limit = int(current_app.config["BASIC_DAILY_LIMIT"])
    used = storage.incr(key, ttl)
    if used > limit:
        _give_back(key)
        retry_after = max(1, math.ceil((reset - now).total_seconds()))
        raise TooManyRequests(
            f"Basic tier allows {limit} messages a day; next reset {reset:%Y-%m-%dT%H:%M:%SZ}. "
            "Upgrade with POST /subscribe/pro.", error="daily_limit_reached",
            headers={"Retry-After": str(retry_after), "X-RateLimit-Limit": str(limit),
                     "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(reset.timestamp()))})
    return QuotaTicket(user_id, day, "basic", used, limit)


def _count_pro_message(user_id: int, daily_key: str, daily_ttl: int,
                       now: datetime) -> tuple[int, tuple[int | None, int | None, int | None]]:
    """Count a Pro message in today's usage and this minute's throttle window: (used today, (limit, remaining,
    reset epoch) or Nones when the throttle is off); 429 taking nothing when the minute is full."""
    limit = int(current_app.config.get("PRO_MINUTE_LIMIT") or 0)
    if limit <= 0:
        return limiter.storage.incr(daily_key, daily_ttl), (None, None, None)
    epoch = now.timestamp()
    minute = int(epoch // 60)
    reset = (minute + 1) * 60
    key = _minute_key(user_id, minute)
    count, used = _incr_two(key, math.ceil(reset - epoch) + 60, daily_key, daily_ttl)
    if count > limit:
        _give_back(key)
        _give_back(daily_key)
        retry_after = max(1, math.ceil(reset - epoch))
        raise TooManyRequests(f"Pro allows {limit} messages a minute; retry in {retry_after} s.",
                              error="rate_limited",
                              headers={"Retry-After": str(retry_after), "X-RateLimit-Limit": str(limit),
                                       "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
    return used, (limit, limit - count, reset)


def _incr_two(key_a: str, ttl_a: int, key_b: str, ttl_b: int) -> tuple[int, int]:
    """Increment two counters: in one round trip on Redis (the limits storage's own script, pipelined by its
    hash), one by one on other storages or when Redis has forgotten the script."""
    storage = limiter.storage
    script = getattr(storage, "lua_incr_expire", None)
    if script is not None:
        pipe = storage.get_connection().pipeline(transaction=False)
        for key, ttl in ((key_a, ttl_a), (key_b, ttl_b)):
            pipe.evalsha(script.sha, 1, storage.prefixed_key(key), ttl, 1)
        try:
            first, second = pipe.execute()
            return int(first), int(second)
        except redis.exceptions.NoScriptError:
            pass  # a restarted Redis: storage.incr loads the script again
    return storage.incr(key_a, ttl_a), storage.incr(key_b, ttl_b)


def refund(ticket: QuotaTicket | Mapping[str, Any] | int, day: str | None = None) -> None:
    """Give a unit back to the day it was taken from: refund(ticket), refund(ticket.to_dict()) or refund(user_id, day)."""
    if isinstance(ticket, QuotaTicket):
        user_id, day = ticket.user_id, ticket.day
    elif isinstance(ticket, Mapping):
        user_id, day = int(ticket["user_id"]), str(ticket["day"])
    else:
        user_id, day = int(ticket), day or day_of(utc_now())
    _give_back(_daily_key(user_id, day))


def _give_back(key: str) -> None:
    """Take one unit off a counter, never below zero."""
    storage = limiter.storage
    decr = getattr(storage, "decr", None)
    if decr is not None:  # the SQLite and memory storages floor at zero themselves
        decr(key)
        return
    # The Redis storage has no decr: add -1, and undo that if the counter was already empty.
    if storage.get(key) > 0 and storage.incr(key, _GRACE_SECONDS, amount=-1) < 0:
        storage.incr(key, _GRACE_SECONDS, amount=1)


def usage(user_id: int, tier: str, at: datetime | None = None) -> dict[str, Any]:
    """The Usage object: {tier, daily_limit, used_today, remaining, resets_at} (limit and remaining null for Pro)."""
    now = at or utc_now()
    day = day_of(now)
    used = limiter.storage.get(_daily_key(user_id, day))
    if tier != "pro":
        return _usage_object("basic", day, used, int(current_app.config["BASIC_DAILY_LIMIT"]))
    limit = int(current_app.config.get("PRO_MINUTE_LIMIT") or 0)
    if limit <= 0:
        return _usage_object("pro", day, used, None)
    minute = int(now.timestamp() // 60)
    count = limiter.storage.get(_minute_key(user_id, minute))
    return _usage_object("pro", day, used, None, limit, max(0, limit - count), (minute + 1) * 60)


def rate_limit_headers(usage: Mapping[str, Any]) -> dict[str, str]:
    """X-RateLimit-Limit/Remaining/Reset for a Usage: Basic's daily quota; for Pro, its per-minute throttle."""
    if usage.get("daily_limit") is not None:
        resets_at = usage["resets_at"]
        if isinstance(resets_at, str):
            resets_at = datetime.fromisoformat(resets_at.replace("Z", "+00:00"))
        return {"X-RateLimit-Limit": str(usage["daily_limit"]), "X-RateLimit-Remaining": str(usage["remaining"]),
                "X-RateLimit-Reset": str(int(resets_at.timestamp()))}
    throttle = usage.get("throttle")
    if not throttle:
        return {}  # Pro with the throttle turned off (PRO_MINUTE_LIMIT=0): no limit to describe
    return {"X-RateLimit-Limit": str(throttle["limit"]), "X-RateLimit-Remaining": str(throttle["remaining"]),
            "X-RateLimit-Reset": str(throttle["reset"])}
