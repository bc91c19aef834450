"""T3 (QUALITY.md) / R10: two web hosts and two consumers (separate processes, separate ports) behind nginx
(deploy/nginx.conf); one web host and one consumer are kill -9ed under load.

30 Pro users each post a message through nginx and read its reply's stream through nginx while Gemini (the fake)
streams every reply over about two seconds (each consumer has a fake Gemini of its own, so the test knows which
replies consumer 1 was answering). Mid-stream, web host A (its whole process group) and consumer 1 are kill -9ed
together. The clients whose streams were on host A reconnect through nginx, which sends them to host B,
and resume with Last-Event-ID; the replies consumer 1 was producing are taken over by consumer 2 (its sweeper
finds their expired leases). Five more messages are posted after the crash. Then:
- every accepted message has exactly one reply, complete, with its own text (no accepted message lost, no reply
  twice);
- every client ends with exactly the stored reply text: the deltas it received after its last `reset` concatenate
  to the stored content, event ids strictly increase across its reconnects (nothing repeated), and its `done`
  carries the stored reply;
- the crash really happened mid-stream: streams served by host A broke and were finished by host B, and the
  replies consumer 1 was answering were produced again (attempt 2), their readers told once to start over
  (`reset`); no other reader saw a reset.
"""
from __future__ import annotations

import re
import threading
import time
import uuid

import pytest
from sqlalchemy import select

from gemini_backend.extensions import db
from gemini_backend.models import Message
from tests.conftest import WORKER_ENV
from tests.deploy.topology import SERVICES_ONLY, Nginx, binary, StreamBroken, ids_increase, request, sse_events
from tests.factories import auth_headers, create_user
from tests.fakes.gemini import FakeGemini, default_reply
from tests.helpers import start_worker, wait_for

pytestmark = [SERVICES_ONLY, pytest.mark.slow, pytest.mark.reliability]

CONVERSATIONS = 30
AFTER_CRASH = 5
LEASE_SECONDS = 5


class Reader(threading.Thread):
    """A client reading one reply's stream through nginx, reconnecting with Last-Event-ID whenever it breaks."""

    def __init__(self, port: int, path: str, headers: dict[str, str], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.port, self.path, self.headers = port, path, headers
        self.events: list = []
        self.connections: list[str] = []  # the X-Test-Conn tag of each connection, to find it in nginx's log
        self.breaks: list[str] = []
        self.finished = False

    def run(self) -> None:
        last_id = None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and len(self.connections) < 20:
            tag = f"{self.name}.{len(self.connections) + 1}"
            self.connections.append(tag)
            headers = {**self.headers, "X-Test-Conn": tag, **({"Last-Event-ID": last_id} if last_id else {})}
            try:
                for event in sse_events(self.port, self.path, headers, timeout=90):
                    self.events.append(event)
                    last_id = event.id or last_id
                self.finished = True
                return
            except (StreamBroken, OSError, AssertionError) as exc:
                self.breaks.append(f"{tag}: {exc}")
                time.sleep(0.2)

    def deltas(self) -> int:
        return sum(1 for e in self.events if e.name == "delta")

    def story(self) -> list:
        """What the client saw, for failure messages."""
        return [(e.name, e.id, round(e.at, 2), e.data if e.name != "delta" else e.data["text"]) for e in self.events]

    def shown_text(self) -> str:
        """What the client shows: the deltas after the last reset."""
        text = ""
        for event in self.events:
            if event.name == "reset":
                text = ""
            elif event.name == "delta":
                text += event.data["text"]
        return text


def post(port: int, headers: dict[str, str], room_id: int, content: str) -> dict:
    """Post through nginx as a careful client does: with an Idempotency-Key, resent on a gateway error."""
    key = uuid.uuid4().hex
    for _ in range(5):
        try:
            status, body, _ = request(port, "POST", f"/chatroom/{room_id}/message",
                                      {**headers, "Idempotency-Key": key}, {"content": content})
        except OSError:
            status, body = 0, None
        if status in (200, 202):
            return body
        assert status in (0, 502, 503, 504), (status, body)
        time.sleep(0.2)
    raise AssertionError(f"the post of {content!r} was never accepted")


def _replies(app) -> list:
    with app.app_context():
        rows = db.session.execute(select(Message.id, Message.reply_to, Message.status, Message.content,
                                         Message.attempts).where(Message.role == "model")).all()
        db.session.remove()
        return rows


def _user_messages(app) -> dict[int, str]:
    with app.app_context():
        rows = db.session.execute(select(Message.id, Message.content).where(Message.role == "user")).all()
        db.session.remove()
        return dict(rows)


def _upstreams(line: str) -> list[str]:
    return re.search(r"up=\[([^\]]*)\]", line)[1].replace(" : ", ", ").split(", ")


def _slow(gemini) -> None:
    gemini.reset()
    gemini.latency, gemini.chunk_count, gemini.chunk_delay = 0.3, 8, 0.25  # a reply streams for about 2 s


def test_r10_a_web_host_and_a_consumer_die_under_load(app, fleet, fake_gemini):
    binary("nginx", "nginx")  # before starting anything
    env = {**WORKER_ENV, "TRUSTED_PROXY_HOPS": "1", "GEMINI_TIMEOUT": "20", "REPLY_LEASE_SECONDS": str(LEASE_SECONDS),
           "REPLY_SWEEP_GRACE": "1"}
    host_a, host_b = fleet.webs(2, workers=2, threads=24, **env)
    # Each consumer has a Gemini of its own, so the test knows which replies the one it kills was answering.
    with FakeGemini() as gemini_1, Nginx([host_a.port, host_b.port]) as nginx:
        gemini_2 = fake_gemini
        _slow(gemini_1)
        _slow(gemini_2)
        users = [auth_headers(app, create_user(app, pro=True)) for _ in range(CONVERSATIONS + AFTER_CRASH)]
        rooms = []
        for i, headers in enumerate(users):
            status, room, _ = request(nginx.port, "POST", "/chatroom", headers, {"name": f"c{i}"})
            assert status == 201, room
            rooms.append(room["id"])

        readers: list[Reader] = []
        expected: dict[int, str] = {}  # reply id -> the text it must end with

        def converse(i: int) -> None:
            content = f"conversation {i} over two hosts"
            posted = post(nginx.port, users[i], rooms[i], content)
            reply_id = posted["reply"]["id"]
            expected[reply_id] = f"Echo: {content}"
            reader = Reader(nginx.port, f"/chatroom/{rooms[i]}/message/{reply_id}/stream", users[i], f"r{i}")
            readers.append(reader)
            reader.start()

        for i in range(CONVERSATIONS):
            converse(i)
        # The consumers start once every reader is connected: 20 replies stream at once, 10 wait in the queue.
        consumer_1 = fleet.add(start_worker(threads=10, wait=False, **env, GEMINI_BASE_URL=gemini_1.base_url),
                               "consumer 1")
        consumer_2 = fleet.worker(threads=10, **env, GEMINI_BASE_URL=gemini_2.base_url)
        wait_for(lambda: len(gemini_1.requests) >= 3 and len(gemini_2.requests) >= 3
                 and sum(1 for r in readers if r.deltas() >= 2) >= 8, timeout=30,
                 what="both consumers to be answering and eight streams to be under way", proc=consumer_1)
        assert sum(r.finished for r in readers) < CONVERSATIONS // 2, "the crash must land mid-stream"
        fleet.kill9(host_a)
        fleet.kill9(consumer_1)
        crashed_at = time.monotonic()
        by_text = {text: reply_id for reply_id, text in expected.items()}
        dying = {by_text[default_reply(call["body"])] for call in gemini_1.requests}  # consumer 1 was answering
        for i in range(CONVERSATIONS, CONVERSATIONS + AFTER_CRASH):
            converse(i)  # the surviving host takes new posts

        # Consumer 2 takes over consumer 1's replies once their leases expire, at its next sweep (each minute).
        for reader in readers:
            reader.join(timeout=max(1.0, crashed_at + 120 - time.monotonic()))
        recovered_in = time.monotonic() - crashed_at
        unfinished = [(r.name, r.deltas(), r.breaks[-3:]) for r in readers if not r.finished]
        assert not unfinished, unfinished
        wait_for(lambda: len([line for line in nginx.access_log() if "/stream " in line])
                 >= sum(len(r.connections) for r in readers), timeout=10, what="nginx to log every stream")
        log = {re.search(r"conn=(\S+)", line)[1]: line for line in nginx.access_log() if "/stream " in line}

    # Every accepted message: exactly one reply, complete, with its own text.
    rows = _replies(app)
    messages = _user_messages(app)
    assert len(messages) == len(expected) == CONVERSATIONS + AFTER_CRASH
    assert len(rows) == len(messages) and {r.reply_to for r in rows} == set(messages)
    assert all(r.status == "complete" for r in rows), [(r.id, r.status) for r in rows if r.status != "complete"]
    assert {r.id: r.content for r in rows} == expected
    assert len({r.content for r in rows}) == len(rows), "no reply text twice"

    # Every client ends with exactly the stored reply: nothing missed, nothing repeated.
    stored = {r.id: r.content for r in rows}
    for reader in readers:
        reply_id = int(reader.path.split("/")[4])
        ids = [e.id for e in reader.events if e.id]
        story = (reader.name, reply_id, reader.story(), reader.breaks, [log.get(c) for c in reader.connections])
        assert ids_increase(ids), story
        assert reader.events[-1].name == "done" and [e.name for e in reader.events].count("done") == 1, story
        assert reader.shown_text() == stored[reply_id] == reader.events[-1].data["content"], story
        if reply_id in dying:  # its first attempt died with consumer 1: the client was told to start over, once
            assert [e.name for e in reader.events].count("reset") == 1, story
        else:
            assert "reset" not in [e.name for e in reader.events], story
            assert "".join(e.data["text"] for e in reader.events if e.name == "delta") == stored[reply_id], story

    # The crash was real: streams on host A broke and were resumed on host B; the replies consumer 1 was answering
    # were produced again (attempt 2) by consumer 2.
    a, b = f"127.0.0.1:{host_a.port}", f"127.0.0.1:{host_b.port}"
    resumed = [r for r in readers if r.breaks and _upstreams(log[r.connections[0]])[-1] == a]
    assert resumed, "some streams must have been on the killed host"
    for reader in resumed:
        assert _upstreams(log[reader.connections[-1]])[-1] == b, [log[c] for c in reader.connections]
        assert len(reader.connections) >= 2
    retried = {r.id for r in rows if r.attempts > 1}
    assert dying and dying <= retried, (dying, retried)
    print(f"R10: {len(resumed)} streams resumed from host A on host B, {len(dying)} replies consumer 1 was "
          f"answering produced again by consumer 2, all {len(rows)} streams done {recovered_in:.1f} s after the crash")
    for survivor in (host_b, consumer_2):
        output = fleet.stop(survivor)
        assert "Traceback" not in output, output[-4000:]
