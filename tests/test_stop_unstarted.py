"""Stopping a reply no consumer has started (no consumer runs in this module): it ends `stopped` and empty at once,
gives its quota unit back and never calls Gemini, even when its queued task runs later."""
from sqlalchemy import update

from gemini_backend.extensions import db
from gemini_backend.models import Message
from gemini_backend.services.replies import answer_reply, claim_reply
from tests.chat_helpers import ChatUser


def _worker_app(make_app, gemini):
    return make_app(GEMINI_API_KEY="test-key", GEMINI_BASE_URL=gemini.base_url)


def test_a_reply_stopped_before_it_started_never_calls_gemini(app, client, make_app, gemini):
    alice = ChatUser(app, client)
    room = alice.room()
    posted = alice.say(room, "never mind")
    assert alice.get("/user/usage").json["used_today"] == 1
    r = alice.post(f"/chatroom/{room}/message/{posted['reply']['id']}/stop")
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["content"]) == ("stopped", "")
    assert alice.get("/user/usage").json["used_today"] == 0, "Gemini was never called: the unit is given back"
    with _worker_app(make_app, gemini).app_context():
        assert answer_reply(posted["reply"]["id"]) == "skipped"  # its queued task, run late
    assert gemini.requests == []
    stream = alice.get(f"/chatroom/{room}/message/{posted['reply']['id']}/stream").get_data(as_text=True)
    assert "event: done" in stream and '"status":"stopped"' in stream


def test_a_stop_the_running_attempt_has_not_heard_is_kept_for_the_next(app, client, make_app, gemini):
    """A live attempt holds the reply (taken here as a consumer takes it) and never reaches another chunk: the stop
    answers 202 with the reply still pending; the attempt dies, and the one that takes the reply over ends it
    `stopped` without calling Gemini, keeping the unit (the first attempt had called it)."""
    alice = ChatUser(app, client)
    room = alice.room()
    posted = alice.say(room, "hold on")
    reply_id = posted["reply"]["id"]
    with app.app_context():
        assert claim_reply(reply_id) is not None
    r = alice.post(f"/chatroom/{room}/message/{reply_id}/stop")
    assert r.status_code == 202 and r.json["status"] == "pending", r.json
    with app.app_context():  # the attempt dies: its lease runs out
        db.session.execute(update(Message).where(Message.id == reply_id).values(lease_expires_at=Message.created_at))
        db.session.commit()
    with _worker_app(make_app, gemini).app_context():
        assert answer_reply(reply_id) == "stopped"
    assert gemini.requests == []
    assert alice.reply(room, reply_id)["status"] == "stopped"
    assert alice.get("/user/usage").json["used_today"] == 1
