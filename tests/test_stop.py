"""Stopping a reply: midway it ends `stopped` with the text so far (within a second, quota unit kept, the text part
of later history); one not started never calls Gemini and gives its unit back; an ended one is 409. The real
consumer and SDK against the fake Gemini."""
import time

import pytest

from tests.chat_helpers import ChatUser
from tests.helpers import wait_for

LONG_ANSWER = " ".join(f"word{i}" for i in range(200))


@pytest.fixture()
def alice(app, client, gemini, worker):
    return ChatUser(app, client)


def _streaming(gemini) -> None:
    """Replies stream for about 4 s: 40 chunks, 0.1 s apart."""
    gemini.reply_fn = lambda body: LONG_ANSWER
    gemini.chunk_count, gemini.chunk_delay = 40, 0.1


def _stream_events(user: ChatUser, room: int, reply_id: int) -> list[tuple[str, str]]:
    """The reply's SSE events as (event, data)."""
    body = user.get(f"/chatroom/{room}/message/{reply_id}/stream").get_data(as_text=True)
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":") and ": " in line)
        if "event" in fields:
            events.append((fields["event"], fields.get("data", "")))
    return events


def test_a_long_answer_stopped_midway_keeps_its_text_so_far(alice, gemini):
    _streaming(gemini)
    room = alice.room()
    posted = alice.say(room, "Tell me everything")
    reply_id = posted["reply"]["id"]
    wait_for(lambda: [call for call in gemini.requests if call["stream"]], timeout=10, what="Gemini to be asked")
    time.sleep(1.0)  # about ten chunks in
    asked = time.monotonic()
    r = alice.post(f"/chatroom/{room}/message/{reply_id}/stop")
    took = time.monotonic() - asked
    assert r.status_code == 200, r.json
    stopped = r.json
    assert stopped["status"] == "stopped" and stopped["completed_at"], stopped
    assert took < 1.0, f"the stop took {took:.2f} s"
    assert stopped["content"] and LONG_ANSWER.startswith(stopped["content"]) and stopped["content"] != LONG_ANSWER
    time.sleep(0.5)
    assert alice.reply(room, reply_id)["content"] == stopped["content"], "nothing was added after the stop"
    assert alice.get("/user/usage").json["used_today"] == 1, "Gemini was called: the unit stays used"
    # The stream ends with `done` carrying the stopped reply.
    events = _stream_events(alice, room, reply_id)
    assert events[-1][0] == "done" and '"status":"stopped"' in events[-1][1]
    # Stopping again is a conflict; the partial answer is part of the next question's history.
    again = alice.post(f"/chatroom/{room}/message/{reply_id}/stop")
    assert again.status_code == 409 and again.json["error"] == "not_stoppable"
    gemini.reset()
    follow = alice.say(room, "Go on")
    alice.finished_reply(room, follow["reply"]["id"])
    contents = [call for call in gemini.requests if call["stream"]][-1]["body"]["contents"]
    assert [c["parts"][0]["text"] for c in contents] == ["Tell me everything", stopped["content"], "Go on"]


def test_stop_through_the_user_message_and_what_cannot_be_stopped(alice, app, client, gemini):
    _streaming(gemini)
    room = alice.room()
    posted = alice.say(room, "Tell me everything")
    wait_for(lambda: [call for call in gemini.requests if call["stream"]], timeout=10, what="Gemini to be asked")
    r = alice.post(f"/chatroom/{room}/message/{posted['message']['id']}/stop")
    assert r.status_code == 200 and r.json["id"] == posted["reply"]["id"] and r.json["status"] == "stopped"
    bob = ChatUser(app, client)
    assert bob.post(f"/chatroom/{room}/message/{posted['reply']['id']}/stop").status_code == 404
    gemini.reset()
    done = alice.say(room, "short")
    alice.finished_reply(room, done["reply"]["id"])
    r = alice.post(f"/chatroom/{room}/message/{done['reply']['id']}/stop")
    assert r.status_code == 409 and r.json["error"] == "not_stoppable"
    # A stopped reply may be regenerated.
    r = alice.post(f"/chatroom/{room}/message/{posted['reply']['id']}/regenerate")
    assert r.status_code == 202
    assert alice.finished_reply(room, r.json["id"])["status"] == "complete"
