"""The message quota on Flask-Limiter's storage (SQLite when embedded, Redis in services mode)."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

from gemini_backend.errors import TooManyRequests
from gemini_backend.services import quota
from gemini_backend.services.quota import QuotaTicket
from tests.factories import create_user

NOON = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
MIDNIGHT = datetime(2026, 11, 24, tzinfo=timezone.utc)


def reserve_until_refused(app, user_id: int, tier: str = "basic", at: datetime = NOON) -> tuple[int, TooManyRequests]:
    """Reserve until the first 429; returns how many were accepted and the refusal."""
    accepted = 0
    with app.app_context():
        while True:
            try:
                quota.reserve_message(user_id, tier, at=at)
            except TooManyRequests as refusal:
                return accepted, refusal
            accepted += 1
            assert accepted < 1000, "never refused"


def test_exactly_the_limit_under_concurrency(app):
    """R6: 20 threads reserving at once for one Basic user at 0 used: exactly 5 win, 15 get
    daily_limit_reached, and usage then says 5 used, 0 remaining."""
    uid = create_user(app)
    barrier = threading.Barrier(20)
    results: list[str] = []
    lock = threading.Lock()

    def post() -> None:
        with app.app_context():
            barrier.wait()
            try:
                quota.reserve_message(uid, "basic")
                outcome = "ok"
            except TooManyRequests as exc:
                outcome = exc.error
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=post) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == ["daily_limit_reached"] * 15 + ["ok"] * 5
    with app.app_context():
        usage = quota.usage(uid, "basic")
    assert (usage["used_today"], usage["remaining"], usage["daily_limit"]) == (5, 0, 5)


def test_over_the_limit_is_429_until_midnight_and_takes_nothing(app):
    """The 6th message of the day is 429 daily_limit_reached with Retry-After = seconds to the next UTC
    midnight and a message naming the reset and the upgrade route; refusals leave the counter at 5."""
    uid = create_user(app)
    accepted, refusal = reserve_until_refused(app, uid)
    assert accepted == 5
    assert refusal.status == 429 and refusal.error == "daily_limit_reached"
    assert refusal.headers["Retry-After"] == str(12 * 3600)
    assert refusal.message == ("Basic tier allows 5 messages a day; next reset 2026-11-24T00:00:00Z. "
                               "Upgrade with POST /subscribe/pro.")
    assert refusal.headers["X-RateLimit-Remaining"] == "0"
    for _ in range(3):
        reserve_until_refused(app, uid)
    with app.app_context():
        assert quota.usage(uid, "basic", at=NOON)["used_today"] == 5


def test_the_429_renders_in_the_error_shape(app):
    """Raised from a route, the refusal is the API's error body with Retry-After."""
    uid = create_user(app)
    reserve_until_refused(app, uid)

    @app.get("/__quota_probe")
    def probe():
        quota.reserve_message(uid, "basic", at=NOON)
        return {}

    r = app.test_client().get("/__quota_probe")
    assert r.status_code == 429 and r.headers["Retry-After"] == str(12 * 3600)
    assert r.json["error"] == "daily_limit_reached" and r.json["status"] == "Too Many Requests"


def test_refund_gives_a_unit_back_to_its_day(app):
    """A refund (by ticket, by the ticket's JSON form, or by user and day) frees a unit of that day; it never
    takes the counter below zero."""
    uid = create_user(app)
    with app.app_context():
        tickets = [quota.reserve_message(uid, "basic", at=NOON) for _ in range(5)]
        assert tickets[-1].day == "2026-11-23" and tickets[-1].used == 5
        quota.refund(tickets[0])
        assert quota.usage(uid, "basic", at=NOON)["remaining"] == 1
        quota.reserve_message(uid, "basic", at=NOON)  # the freed unit is usable
        carried = json.loads(json.dumps(tickets[1].to_dict()))  # what a Huey task would carry
        quota.refund(carried)
        quota.refund(QuotaTicket.from_dict(carried))
        quota.refund(uid, "2026-11-23")
        assert quota.usage(uid, "basic", at=NOON)["used_today"] == 2
        for _ in range(5):
            quota.refund(uid, "2026-11-23")
        assert quota.usage(uid, "basic", at=NOON)["used_today"] == 0
        quota.refund(uid, "2026-11-22")  # a day with no counter
        assert quota.usage(uid, "basic", at=NOON - timedelta(days=1))["used_today"] == 0


def test_a_new_utc_day_has_a_fresh_quota(app):
    """The window is the UTC calendar day: at 23:59:59 the 6th is refused with Retry-After 1; at 00:00:00
    the next day starts at 0, and yesterday's count is untouched."""
    uid = create_user(app)
    last_second = MIDNIGHT - timedelta(seconds=1)
    accepted, refusal = reserve_until_refused(app, uid, at=last_second)
    assert accepted == 5 and refusal.headers["Retry-After"] == "1"
    with app.app_context():
        ticket = quota.reserve_message(uid, "basic", at=MIDNIGHT)
        assert ticket.day == "2026-11-24" and ticket.used == 1
        assert quota.usage(uid, "basic", at=last_second)["used_today"] == 5
        assert quota.usage(uid, "basic", at=MIDNIGHT)["resets_at"] == MIDNIGHT + timedelta(days=1)


def test_users_do_not_share_a_quota(app):
    """One user's quota is not another's."""
    first, second = create_user(app), create_user(app)
    assert reserve_until_refused(app, first)[0] == 5
    assert reserve_until_refused(app, second)[0] == 5


def test_pro_has_no_daily_limit(app):
    """Pro users post past the Basic limit; usage counts their messages with a null limit and remaining."""
    uid = create_user(app, pro=True)
    with app.app_context():
        for _ in range(12):
            quota.reserve_message(uid, "pro", at=NOON)
        usage = quota.usage(uid, "pro", at=NOON)
    assert {k: usage[k] for k in ("tier", "daily_limit", "used_today", "remaining")} == {
        "tier": "pro", "daily_limit": None, "used_today": 12, "remaining": None}


def test_pro_minute_throttle(make_app):
    """Pro's abuse throttle: PRO_MINUTE_LIMIT per clock minute, then 429 rate_limited until the minute ends."""
    throttled = make_app(PRO_MINUTE_LIMIT=3)
    uid = create_user(throttled, pro=True)
    accepted, refusal = reserve_until_refused(throttled, uid, "pro", at=NOON + timedelta(seconds=15))
    assert accepted == 3 and refusal.error == "rate_limited" and refusal.headers["Retry-After"] == "45"
    with throttled.app_context():
        quota.reserve_message(uid, "pro", at=NOON + timedelta(minutes=1))
        assert quota.usage(uid, "pro", at=NOON)["used_today"] == 4  # refusals took nothing


def test_rate_limit_headers_agree_with_usage(app):
    """Basic headers are the daily quota (Reset = epoch of the next UTC midnight) and equal what usage says;
    Pro headers describe the per-minute throttle."""
    basic, pro = create_user(app), create_user(app, pro=True)
    with app.app_context():
        ticket = quota.reserve_message(basic, "basic", at=NOON)
        headers = quota.rate_limit_headers(ticket.usage)
        assert headers == {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4",
                           "X-RateLimit-Reset": str(int(MIDNIGHT.timestamp()))}
        assert quota.rate_limit_headers(quota.usage(basic, "basic", at=NOON)) == headers
        assert quota.usage(basic, "basic", at=NOON) == ticket.usage
        pro_ticket = quota.reserve_message(pro, "pro", at=NOON)
        pro_headers = quota.rate_limit_headers(pro_ticket.usage)
        limit = app.config["PRO_MINUTE_LIMIT"]
        assert pro_headers == {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(limit - 1),
                               "X-RateLimit-Reset": str(int((NOON + timedelta(minutes=1)).timestamp()))}
        assert quota.rate_limit_headers(quota.usage(pro, "pro", at=NOON)) == pro_headers


def test_pro_counting_survives_redis_forgetting_its_scripts(make_app):
    """Pro posts count both counters in one pipelined round trip; after SCRIPT FLUSH (what a Redis restart
    does) they still count, through the storage's own path that loads the script again."""
    import pytest
    from gemini_backend.extensions import limiter
    throttled = make_app(PRO_MINUTE_LIMIT=100)
    if not throttled.config.get("REDIS_URL"):
        pytest.skip("Lua scripts exist in services mode (Redis) only")
    uid = create_user(throttled, pro=True)
    with throttled.app_context():
        quota.reserve_message(uid, "pro", at=NOON)
        limiter.storage.get_connection().script_flush()
        ticket = quota.reserve_message(uid, "pro", at=NOON)
        assert ticket.used == 2 and quota.usage(uid, "pro", at=NOON)["used_today"] == 2
        assert quota.reserve_message(uid, "pro", at=NOON).used == 3  # and pipelined again
