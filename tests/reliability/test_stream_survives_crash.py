"""A consumer killed mid-stream: the SSE client still ends with exactly one done carrying the stored reply."""
import signal
import time

import pytest

from tests.chat_helpers import ChatUser
from tests.conftest import WORKER_ENV
from tests.helpers import start_worker, stop
from tests.test_streaming import read_events, services_only, stream, text_of

pytestmark = pytest.mark.reliability


@pytest.fixture()
def alice(app, client):
    return ChatUser(app, client, pro=True)


@services_only
def test_kill9_mid_stream_ends_with_one_done_of_the_stored_reply(app, alice, fake_gemini):
    """kill -9 of the consumer mid-stream: the client sees a reset, then the new attempt, then one done whose
    content is the stored reply, which equals the text after the reset."""
    fake_gemini.reset()
    fake_gemini.chunk_count, fake_gemini.chunk_delay = 6, 0.5
    env = {**WORKER_ENV, "REPLY_LEASE_SECONDS": "3", "REPLY_SWEEP_GRACE": "1", "GEMINI_BASE_URL": fake_gemini.base_url}
    room = alice.room()
    posted = alice.say(room, "survive the crash")
    reply_id = posted["reply"]["id"]
    first = start_worker(threads=1, **env)
    response = stream(alice, room, reply_id)
    events = read_events(response, stop_after=2)
    stop(first, sig=signal.SIGKILL)
    time.sleep(3.5)  # the dead attempt's lease runs out
    fake_gemini.chunk_delay = 0.05
    second = start_worker(threads=1, **env)
    try:
        events += read_events(stream(alice, room, reply_id, last_event_id=events[-1][2]))
    finally:
        stop(second)
    names = [e[0] for e in events]
    assert "reset" in names and names.count("done") == 1 and names[-1] == "done"
    stored = alice.reply(room, reply_id)
    assert stored["status"] == "complete" and text_of(events) == stored["content"] == events[-1][1]["content"]
