"""R9 (QUALITY.md): a reply is stopped through one web host while a consumer, another process with its own Gemini,
streams it and a client reads its stream through a second web host. It ends `stopped` within a second with the
text so far, and the reader's stream ends with `done` carrying it: deltas and stored text agree."""
from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import WORKER_ENV
from tests.deploy.topology import SERVICES_ONLY, request, sse_events
from tests.factories import auth_headers, create_user
from tests.fakes.gemini import FakeGemini
from tests.helpers import wait_for

pytestmark = [SERVICES_ONLY, pytest.mark.reliability]
LONG_ANSWER = " ".join(f"word{i}" for i in range(300))


def test_r9_a_reply_is_stopped_from_another_host(app, fleet):
    host_a, host_b = fleet.webs(2, **WORKER_ENV)
    with FakeGemini() as gemini:
        gemini.reply_fn = lambda body: LONG_ANSWER
        gemini.chunk_count, gemini.chunk_delay = 60, 0.1  # about 6 s of streaming
        fleet.worker(GEMINI_BASE_URL=gemini.base_url, **WORKER_ENV)
        headers = auth_headers(app, create_user(app, pro=True))
        status, room, _ = request(host_a.port, "POST", "/chatroom", headers, {"name": "R9"})
        assert status == 201, room
        status, posted, _ = request(host_a.port, "POST", f"/chatroom/{room['id']}/message", headers,
                                    {"content": "Tell me everything"})
        assert status == 202, posted
        reply_id = posted["reply"]["id"]
        events: list = []
        reader = threading.Thread(target=lambda: events.extend(sse_events(
            host_b.port, f"/chatroom/{room['id']}/message/{reply_id}/stream", headers, timeout=30)), daemon=True)
        reader.start()
        wait_for(lambda: sum(e.name == "delta" for e in events) >= 5, timeout=15, what="five deltas on host B")
        asked = time.monotonic()
        status, stopped, _ = request(host_a.port, "POST", f"/chatroom/{room['id']}/message/{reply_id}/stop", headers)
        took = time.monotonic() - asked
        reader.join(timeout=10)
    assert status == 200 and stopped["status"] == "stopped", stopped
    assert took < 1.0, f"the stop took {took:.2f} s"
    assert stopped["content"] and LONG_ANSWER.startswith(stopped["content"]) and stopped["content"] != LONG_ANSWER
    assert not reader.is_alive() and events[-1].name == "done", [e.name for e in events]
    assert events[-1].data["status"] == "stopped" and events[-1].data["content"] == stopped["content"]
    assert "".join(e.data["text"] for e in events if e.name == "delta") == stopped["content"]
