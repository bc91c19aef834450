"""Posting messages and getting exactly one Gemini reply, with a real consumer and the fake Gemini."""
import pytest
from sqlalchemy.exc import IntegrityError

from gemini_backend.extensions import db
from gemini_backend.models import Message


@pytest.mark.parametrize("field", ["content", "message", "input"])
def test_post_stores_message_and_pending_reply(alice, field):
    """202 {message, reply}: the user message is stored complete and a pending reply answers it."""
    room = alice.room()
    r = alice.post(f"/chatroom/{room}/message", json={field: "Hello there"})
    assert r.status_code == 202, r.json
    message, reply = r.json["message"], r.json["reply"]
    assert message["role"] == "user" and message["status"] == "complete" and message["content"] == "Hello there"
    assert reply["role"] == "model" and reply["status"] == "pending" and reply["reply_to"] == message["id"]
    assert r.headers["X-RateLimit-Limit"] == "5" and r.headers["X-RateLimit-Remaining"] == "4"
    assert int(r.headers["X-RateLimit-Reset"]) > 0


def test_post_body_is_what_the_room_then_shows(alice):
    """The 202 body is built without reading the rows back: it must equal the stored messages field for field (the
    room's page adds only each message's sibling_ids)."""
    room = alice.room()
    r = alice.post(f"/chatroom/{room}/message", json={"content": "Same either way"})
    page = alice.get(f"/chatroom/{room}").json["messages"]
    assert [m.pop("sibling_ids") for m in page] == [[m["id"]] for m in page]
    stored = {m["id"]: m for m in page}
    assert r.json["message"] == stored[r.json["message"]["id"]]
    reply = stored[r.json["reply"]["id"]]
    if reply["status"] == "pending":  # a consumer may already have answered it
        assert r.json["reply"] == reply


@pytest.mark.parametrize("body", [{"content": ""}, {"content": "   "}, {"content": "x" * 8001}, {},
                                  {"content": 42}, {"content": None}])
def test_bad_content_is_422_and_uses_no_quota(alice, body):
    """Empty, blank, over 8000 characters, missing or non-string content is 422; nothing stored, no quota used."""
    room = alice.room()
    r = alice.post(f"/chatroom/{room}/message", json=body)
    assert r.status_code == 422 and r.json["error"] == "validation_error"
    assert alice.usage_used() == 0
    assert alice.get(f"/chatroom/{room}").json["messages"] == []


def test_8000_characters_are_accepted(alice):
    """The upper bound itself is fine."""
    assert alice.post(f"/chatroom/{alice.room()}/message", json={"content": "y" * 8000}).status_code == 202


def test_idempotency_key_replays_the_first_response(app, alice):
    """The same Idempotency-Key returns the first response, creates nothing and counts one quota unit."""
    room = alice.room()
    headers = {"Idempotency-Key": "abc-123"}
    first = alice.post(f"/chatroom/{room}/message", json={"content": "once"}, headers=headers)
    again = alice.post(f"/chatroom/{room}/message", json={"content": "once"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json["message"]["id"] == first.json["message"]["id"]
    assert again.json["reply"]["id"] == first.json["reply"]["id"]
    assert alice.usage_used() == 1
    assert len(alice.get(f"/chatroom/{room}").json["messages"]) == 2
    other = alice.post(f"/chatroom/{room}/message", json={"content": "different"}, headers=headers)
    assert other.status_code == 409 and other.json["error"] == "idempotency_key_reused"


def test_one_pending_reply_per_message_is_a_database_rule(app, alice):
    """A second pending reply row for the same user message violates a unique index (regenerations come one at a
    time)."""
    room = alice.room()
    posted = alice.say(room, "hi")
    assert posted["reply"]["status"] == "pending"
    with app.app_context():
        db.session.add(Message(chatroom_id=room, role="model", content="", status="pending",
                               reply_to=posted["message"]["id"], parent_id=posted["message"]["id"]))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_long_poll_on_a_user_message_answers_at_once(alice):
    """?wait=N long-polls replies only: on a user message (always complete) it answers at once."""
    import time
    room = alice.room()
    posted = alice.say(room, "no waiting")
    started = time.monotonic()
    r = alice.get(f"/chatroom/{room}/message/{posted['message']['id']}?wait=10")
    assert r.status_code == 200 and r.json["status"] == "complete" and time.monotonic() - started < 2


def test_claim_is_exclusive(app, alice):
    """Two claims on one pending reply: only the first gets the lease."""
    from gemini_backend.services.replies import claim_reply
    posted = alice.say(alice.room(), "hi")
    with app.app_context():
        first = claim_reply(posted["reply"]["id"])
        second = claim_reply(posted["reply"]["id"])
    assert first is not None and second is None


def test_reply_is_generated_from_history(alice, gemini, worker):
    """The consumer answers through Gemini with the room's history as multi-turn contents and the system instruction."""
    room = alice.room()
    first = alice.say(room, "My name is Ada.")
    done = alice.finished_reply(room, first["reply"]["id"])
    assert done["status"] == "complete" and done["content"] == "Echo: My name is Ada." and done["completed_at"]
    second = alice.say(room, "What is my name?")
    assert alice.finished_reply(room, second["reply"]["id"])["content"] == "Echo: What is my name?"
    body = gemini.requests[-1]["body"]
    turns = [(c["role"], c["parts"][0]["text"]) for c in body["contents"]]
    assert turns == [("user", "My name is Ada."), ("model", "Echo: My name is Ada."), ("user", "What is my name?")]
    assert body["systemInstruction"]["parts"][0]["text"]


def test_wait_returns_the_finished_reply(alice, gemini, worker):
    """?wait=N answers 200 with the complete reply when it finishes in time."""
    gemini.latency = 0.3
    room = alice.room()
    r = alice.post(f"/chatroom/{room}/message?wait=15", json={"content": "quick"})
    assert r.status_code == 200, r.json
    assert r.json["reply"]["status"] == "complete" and r.json["reply"]["content"] == "Echo: quick"


def test_wait_times_out_with_202(alice, gemini, worker):
    """When the reply takes longer than wait, the post answers 202 with the reply still pending."""
    gemini.latency = 1.5
    r = alice.post(f"/chatroom/{alice.room()}/message?wait=0.3", json={"content": "slow"})
    assert r.status_code == 202 and r.json["reply"]["status"] == "pending"


def test_long_poll_on_a_reply(alice, gemini, worker):
    """GET message?wait=N returns as soon as the reply is no longer pending."""
    gemini.latency = 0.5
    room = alice.room()
    posted = alice.say(room, "poll me")
    r = alice.get(f"/chatroom/{room}/message/{posted['reply']['id']}?wait=15")
    assert r.status_code == 200 and r.json["status"] == "complete"


def test_failed_turns_are_left_out_and_retry_works(alice, gemini, worker):
    """A failed exchange is not sent as history; retry starts a new attempt (no quota) that completes."""
    room = alice.room()
    gemini.script = [("error", 400)]
    failed = alice.say(room, "first try")
    assert alice.finished_reply(room, failed["reply"]["id"])["status"] == "failed"
    ok = alice.say(room, "second")
    alice.finished_reply(room, ok["reply"]["id"])
    assert [c["parts"][0]["text"] for c in gemini.requests[-1]["body"]["contents"]] == ["second"]
    used = alice.usage_used()
    r = alice.post(f"/chatroom/{room}/message/{failed['reply']['id']}/retry")
    assert r.status_code == 202 and r.json["status"] == "pending"
    assert alice.finished_reply(room, failed["reply"]["id"])["content"] == "Echo: first try"
    assert alice.usage_used() == used
    again = alice.post(f"/chatroom/{room}/message/{failed['reply']['id']}/retry")
    assert again.status_code == 409 and again.json["error"] == "not_retryable"
