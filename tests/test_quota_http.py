"""The daily quota through the HTTP API: R6, the 429 shape, headers agreeing with /user/usage."""
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from tests.chat_helpers import ChatUser


def test_r6_twenty_parallel_posts_accept_exactly_five(app, client):
    """R6: 20 concurrent posts by a Basic user at 0 used: exactly 5 accepted, 15 refused; usage says 5."""
    alice = ChatUser(app, client)
    room = alice.room()

    def post(i):
        return app.test_client().post(f"/chatroom/{room}/message", json={"content": f"m{i}"}, headers=alice.headers)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(post, range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes == [202] * 5 + [429] * 15, codes
    usage = alice.get("/user/usage").json
    assert usage["used_today"] == 5 and usage["remaining"] == 0 and usage["daily_limit"] == 5
    assert len(alice.get(f"/chatroom/{room}").json["messages"]) == 10


def test_sixth_message_gets_a_helpful_429(app, client):
    """Over the limit: 429 daily_limit_reached, Retry-After to the next UTC midnight, naming the upgrade route."""
    alice = ChatUser(app, client)
    room = alice.room()
    for i in range(5):
        alice.say(room, f"m{i}")
    r = alice.post(f"/chatroom/{room}/message", json={"content": "one too many"})
    assert r.status_code == 429 and r.json["error"] == "daily_limit_reached"
    assert "POST /subscribe/pro" in r.json["message"]
    now = datetime.now(timezone.utc)
    to_midnight = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    assert abs(int(r.headers["Retry-After"]) - to_midnight) <= 5
    assert r.headers["X-RateLimit-Remaining"] == "0"


def test_headers_agree_with_usage(app, client):
    """X-RateLimit-Limit/Remaining/Reset on each post match GET /user/usage."""
    alice = ChatUser(app, client)
    room = alice.room()
    for i in range(3):
        r = alice.post(f"/chatroom/{room}/message", json={"content": f"m{i}"})
        usage = alice.get("/user/usage")
        assert r.headers["X-RateLimit-Limit"] == str(usage.json["daily_limit"]) == "5"
        assert r.headers["X-RateLimit-Remaining"] == str(usage.json["remaining"]) == str(4 - i)
        reset = datetime.fromisoformat(usage.json["resets_at"].replace("Z", "+00:00"))
        assert int(r.headers["X-RateLimit-Reset"]) == int(reset.timestamp())


def test_pro_users_have_no_daily_limit(app, client):
    """A Pro user posts past the Basic limit; usage shows no limit."""
    pro = ChatUser(app, client, pro=True)
    room = pro.room()
    for i in range(7):
        assert pro.post(f"/chatroom/{room}/message", json={"content": f"m{i}"}).status_code == 202
    usage = pro.get("/user/usage").json
    assert usage["tier"] == "pro" and usage["daily_limit"] is None and usage["remaining"] is None
    assert usage["used_today"] == 7
