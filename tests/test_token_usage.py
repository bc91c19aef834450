"""Token usage: each finished reply stores Gemini's usage_metadata as `usage`, and GET /user/usage adds the day's and
the month's totals. The real consumer and SDK against the fake Gemini, which reports usage as Google does."""
from tests.chat_helpers import ChatUser


def test_a_finished_reply_carries_geminis_token_counts(app, client, gemini, worker):
    alice = ChatUser(app, client, pro=True)
    room = alice.room()
    posted = alice.say(room, "count my tokens please")
    assert posted["message"]["usage"] is None and posted["reply"]["usage"] is None  # pending
    reply = alice.finished_reply(room, posted["reply"]["id"])
    assert reply["status"] == "complete"
    usage = reply["usage"]
    # The fake counts about a token per 4 characters, as its final chunk's usageMetadata says.
    assert usage["output_tokens"] == len(reply["content"]) // 4 > 0
    assert usage["prompt_tokens"] > 0 and usage["thinking_tokens"] == 0 and usage["cached_tokens"] == 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["output_tokens"]
    shown = alice.get(f"/chatroom/{room}").json["messages"]
    assert [m["usage"] for m in shown] == [None, usage]


def test_user_usage_adds_the_tokens_of_the_day_and_the_month(app, client, gemini, worker):
    alice = ChatUser(app, client, pro=True)
    before = alice.get("/user/usage").json
    assert before["tokens_today"] == before["tokens_this_month"] == 0
    room = alice.room()
    totals = []
    for question in ("first question", "a second, longer question about tokens"):
        posted = alice.say(room, question)
        totals.append(alice.finished_reply(room, posted["reply"]["id"])["usage"]["total_tokens"])
    after = alice.get("/user/usage")
    assert after.status_code == 200
    assert after.json["tokens_today"] == after.json["tokens_this_month"] == sum(totals)
    assert after.json["used_today"] == 2
    other = ChatUser(app, client).get("/user/usage").json
    assert other["tokens_today"] == 0, "another user's replies never count"


def test_a_retried_reply_starts_over_without_usage_or_feedback(app, client):
    """A retried reply starts over pending: its usage (and feedback) are cleared with its text."""
    from gemini_backend.extensions import db
    from gemini_backend.models import Message
    alice = ChatUser(app, client)
    room = alice.room()
    reply_id = alice.say(room, "will fail")["reply"]["id"]
    with app.app_context():
        reply = db.session.get(Message, reply_id)
        reply.status, reply.usage = "failed", {"prompt_tokens": 3, "output_tokens": 0, "thinking_tokens": 0,
                                               "cached_tokens": 0, "total_tokens": 3}
        reply.feedback = {"rating": "down", "comment": None, "updated_at": "2026-12-03T00:00:00+00:00"}
        db.session.commit()
    assert alice.reply(room, reply_id)["usage"]["total_tokens"] == 3
    retried = alice.post(f"/chatroom/{room}/message/{reply_id}/retry")
    assert retried.status_code == 202
    assert retried.json["usage"] is None and retried.json["feedback"] is None
