"""The consumer's own machinery: its lean app, the single-transaction claim, and the per-attempt stream writer."""
import subprocess
import sys
from pathlib import Path

import pytest

from gemini_backend.extensions import db
from gemini_backend.models import Message
from tests.chat_helpers import ChatUser
from tests.conftest import BACKEND
from tests.helpers import ROOT, child_env, wait_for

services_only = pytest.mark.skipif(BACKEND.name != "services", reason="reply streams need Redis (services mode)")


@pytest.fixture()
def alice(app, client):
    return ChatUser(app, client, pro=True)


def _add(room_id: int, role: str, content: str, status: str, reply_to: int | None = None) -> int:
    """A message on the room's one branch: a reply under its user message, a user message under the last reply."""
    from sqlalchemy import func, select
    parent = reply_to if role == "model" else db.session.scalar(
        select(func.max(Message.id)).where(Message.chatroom_id == room_id, Message.role == "model"))
    row = Message(chatroom_id=room_id, role=role, content=content, status=status, reply_to=reply_to, parent_id=parent)
    db.session.add(row)
    db.session.flush()
    return row.id


def test_worker_app_leaves_out_the_web_side(app):
    """The app the consumer runs in loads the reply path without the web's routes, schemas, billing or migrations,
    on gevent's patched sockets (patched before anything else was loaded)."""
    code = ("import sys; import gemini_backend.worker; "
            "from gevent import monkey; assert monkey.is_module_patched('socket'); "
            "assert gemini_backend.worker.app.config['WORKER_TYPE'] == 'greenlet'; "
            "print(' '.join(sorted(name for name in sys.modules if name.split('.')[0] in "
            "('stripe', 'alembic', 'apispec', 'gemini_backend'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert "gemini_backend.services.replies" in loaded
    assert not loaded & {"stripe", "gemini_backend.api", "gemini_backend.services.billing",
                         "gemini_backend.services.messages", "gemini_backend.schemas"}


def test_flask_worker_becomes_the_lean_consumer_in_place(worker):
    """`flask worker` replaces itself (same pid, so signals and supervisors still reach it) with Huey's consumer on
    the worker entry module."""
    def consumer_runs() -> bool:
        argv = Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0")
        return b"huey.bin.huey_consumer" in argv and b"gemini_backend.worker.huey" in argv
    wait_for(consumer_runs, timeout=30, what="`flask worker` to become the consumer", proc=worker)


def test_claim_with_history_takes_the_lease_once_and_reads_answered_turns(app, alice):
    """One claim gets the lease and the history (failed exchanges left out); a second claim gets nothing."""
    from gemini_backend.ai import Turn
    from gemini_backend.services.replies import claim_with_history
    room = alice.room()
    with app.app_context():
        first = _add(room, "user", "My name is Ada.", "complete")
        _add(room, "model", "Hello Ada.", "complete", reply_to=first)
        failed = _add(room, "user", "lost question", "complete")
        _add(room, "model", "", "failed", reply_to=failed)
        question = _add(room, "user", "What is my name?", "complete")
        reply = _add(room, "model", "", "pending", reply_to=question)
        db.session.commit()
        claimed = claim_with_history(reply)
        again = claim_with_history(reply)
        attempts = db.session.get(Message, reply).attempts
    assert claimed is not None and again is None
    claim, history, _room = claimed
    assert (claim.reply_id, claim.attempt, claim.user_message_id, claim.room_id) == (reply, 1, question, room)
    assert history == [Turn("user", "My name is Ada."), Turn("model", "Hello Ada."), Turn("user", "What is my name?")]
    assert attempts == 1


@services_only
def test_attempt_stream_writes_in_order_and_announces_each_entry(app):
    """Entries go into the stream in order, each announced on the reply's channel naming the entry before it; the
    end sets the short expiry."""
    import json
    from gemini_backend.extensions import get_redis
    from gemini_backend.services import streams
    with app.app_context():
        redis = get_redis()
        waiter = redis.pubsub()
        waiter.subscribe(streams.channel(41))
        assert waiter.get_message(timeout=2)["type"] == "subscribe"
        stream = streams.AttemptStream(41, attempt=2)
        stream.reset()
        stream.delta("Hel")
        stream.delta("lo")
        streams.publish_end(41, "complete")
        stored = redis.xrange(streams.stream_key(41))
        ttl = redis.ttl(streams.stream_key(41))
        announced = [json.loads(waiter.get_message(timeout=2)["data"]) for _ in stored]
        waiter.close()
    assert [fields for _, fields in stored] == [{b"type": b"reset", b"attempt": b"2"},
                                                {b"type": b"delta", b"attempt": b"2", b"text": b"Hel"},
                                                {b"type": b"delta", b"attempt": b"2", b"text": b"lo"},
                                                {b"type": b"end", b"status": b"complete"}]
    ids = [entry_id.decode() for entry_id, _ in stored]
    assert [tuple(message[:2]) for message in announced] == list(zip(["0-0"] + ids[:-1], ids))
    assert announced[-1][2:] == ["type", "end", "status", "complete"]
    assert 0 < ttl <= streams.KEEP_AFTER_END_SECONDS


@services_only
def test_a_waiter_that_missed_an_announcement_reads_the_gap_from_the_stream(app):
    """The listener hands a watch each announcement; one that does not follow the waiter's cursor (a message lost
    in a reconnect) is answered from the stream, so the waiter gets every entry once, in order."""
    from gemini_backend.services import streams
    with app.app_context():
        with streams.watch(43) as watch:
            stream = streams.AttemptStream(43, attempt=1)
            stream.delta("a")
            stream.delta("b")
            stream.delta("c")
            first = streams.next_entries(watch, 43, "0-0", timeout=2)
            assert [fields["text"] for _, fields in first] == ["a"]
            watch.get(timeout=2)  # the announcement of "b" is lost
            rest = streams.next_entries(watch, 43, first[0][0], timeout=2)  # "c" does not follow "a"
            assert [fields["text"] for _, fields in rest] == ["b", "c"]
            assert streams.next_entries(watch, 43, rest[-1][0], timeout=0.2) is None
        assert streams.listener().watching() == 0


@services_only
def test_each_attempt_streams_a_reset_then_its_chunks_then_the_end(alice, gemini, worker):
    """A reply's stream: reset, chunks, end; a retry after a broken stream starts again with its own reset."""
    from gemini_backend.extensions import get_redis
    from gemini_backend.services import streams
    room = alice.room()
    plain = alice.say(room, "first time")
    assert alice.finished_reply(room, plain["reply"]["id"])["status"] == "complete"
    gemini.script = [("error_mid_stream", 503)]
    retried = alice.say(room, "second time")
    assert alice.finished_reply(room, retried["reply"]["id"])["status"] == "complete"
    with alice.app.app_context():
        kinds = {posted["reply"]["id"]: [(f[b"type"], f.get(b"attempt"))
                                        for _, f in get_redis().xrange(streams.stream_key(posted["reply"]["id"]))]
                 for posted in (plain, retried)}
    assert kinds[plain["reply"]["id"]] == [(b"reset", b"1")] + [(b"delta", b"1")] * 3 + [(b"end", None)]
    assert kinds[retried["reply"]["id"]] == ([(b"reset", b"1"), (b"delta", b"1"), (b"reset", b"2")]
                                            + [(b"delta", b"2")] * 3 + [(b"end", None)])
