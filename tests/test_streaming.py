"""Streaming replies over Server-Sent Events, with a real consumer and a fake Gemini that streams slowly."""
import json
import time

import pytest

from tests.chat_helpers import ChatUser
from tests.conftest import BACKEND

services_only = pytest.mark.skipif(BACKEND.name != "services", reason="live chunks need Redis (services mode)")


@pytest.fixture()
def alice(app, client):
    return ChatUser(app, client, pro=True)


def read_events(response, stop_after=None):
    """Parse SSE events from a streamed test response: [(name, data, id, arrival time)]."""
    events, buffer = [], ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            raw, buffer = buffer.split("\n\n", 1)
            if raw.startswith(":"):
                continue
            fields = dict(line.split(": ", 1) for line in raw.splitlines())
            events.append((fields["event"], json.loads(fields["data"]), fields.get("id"), time.monotonic()))
            if events[-1][0] in ("done", "error") or (stop_after and len(events) >= stop_after):
                response.close()
                return events
    return events


def stream(alice, room, reply_id, last_event_id=None):
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    r = alice.client.get(f"/chatroom/{room}/message/{reply_id}/stream", headers={**alice.headers, **headers},
                         buffered=False)
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    assert r.headers["X-Accel-Buffering"] == "no" and "no-cache" in r.headers["Cache-Control"]
    return r


def text_of(events):
    """The text a client shows: deltas after the last reset."""
    text = ""
    for name, data, _, _ in events:
        if name == "reset":
            text = ""
        elif name == "delta":
            text += data["text"]
    return text


@services_only
def test_chunks_arrive_in_order_and_in_time(alice, gemini, worker):
    """Deltas arrive as Gemini produces them (not all at the end), ids increase, done carries the stored reply."""
    gemini.chunk_count, gemini.chunk_delay = 4, 0.4
    room = alice.room()
    posted = alice.say(room, "stream this please")
    events = read_events(stream(alice, room, posted["reply"]["id"]))
    deltas = [e for e in events if e[0] == "delta"]
    assert len(deltas) == 4 and events[-1][0] == "done"
    assert deltas[-1][3] - deltas[0][3] >= 0.8, "chunks must arrive spread out, as generated"
    ids = [e[2] for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert text_of(events) == "Echo: stream this please" == events[-1][1]["content"]
    assert events[-1][1]["status"] == "complete"


@services_only
def test_reconnect_with_last_event_id_resumes(alice, gemini, worker):
    """A client that drops after two deltas and reconnects with Last-Event-ID misses and repeats nothing."""
    gemini.chunk_count, gemini.chunk_delay = 5, 0.3
    room = alice.room()
    posted = alice.say(room, "resume me after a drop")
    first = read_events(stream(alice, room, posted["reply"]["id"]), stop_after=2)
    assert [e[0] for e in first] == ["delta", "delta"]
    rest = read_events(stream(alice, room, posted["reply"]["id"], last_event_id=first[-1][2]))
    assert rest[-1][0] == "done"
    assert text_of(first + rest) == rest[-1][1]["content"] == "Echo: resume me after a drop"
    assert not {e[2] for e in first} & {e[2] for e in rest}


def test_finished_reply_is_sent_whole(alice, gemini, worker):
    """Connecting after the end gives the stored reply as one delta and done (also in embedded mode)."""
    room = alice.room()
    posted = alice.say(room, "already done")
    alice.finished_reply(room, posted["reply"]["id"])
    events = read_events(stream(alice, room, posted["reply"]["id"]))
    assert [e[0] for e in events] == ["delta", "done"]
    assert events[0][1]["text"] == events[1][1]["content"] == "Echo: already done"
    again = read_events(stream(alice, room, posted["reply"]["id"], last_event_id=events[0][2]))
    assert [e[0] for e in again] == ["done"]


def test_streaming_a_user_message_follows_its_reply(alice, gemini, worker):
    """The stream of a user message id is the stream of its reply; a failed reply ends with `error`."""
    gemini.script = [("error", 400)]
    room = alice.room()
    posted = alice.say(room, "will fail")
    events = read_events(stream(alice, room, posted["message"]["id"]))
    assert events[-1][0] == "error" and events[-1][1]["status"] == "failed"


def test_other_users_streams_are_404(app, client, alice):
    """S1 for the stream route."""
    room = alice.room()
    posted = alice.say(room, "mine")
    bob = ChatUser(app, client)
    r = bob.get(f"/chatroom/{room}/message/{posted['reply']['id']}/stream")
    assert r.status_code == 404 and r.json["error"] == "chatroom_not_found"
