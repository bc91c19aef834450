"""Reliability scenarios R1, R5 and R8 of QUALITY.md, with real consumer (and gunicorn) processes."""
import signal
import time

import pytest

from tests.chat_helpers import ChatUser, model_replies
from tests.conftest import BACKEND, WORKER_ENV
from tests.helpers import free_port, http_json, start_web, start_worker, stop, wait_for

pytestmark = pytest.mark.reliability


def _worker(fake, threads, **env):
    return start_worker(threads=threads, GEMINI_BASE_URL=fake.base_url,
                        **{**WORKER_ENV, "REPLY_LEASE_SECONDS": "4", "REPLY_SWEEP_GRACE": "1", **env})


def test_r1_kill9_consumer_with_20_replies_in_flight(app, client, gemini):
    """R1: kill -9 the consumer mid-flight; a new consumer completes all 20 replies, each exactly once."""
    alice = ChatUser(app, client, pro=True)
    gemini.latency = 6.0
    rooms = [alice.room(f"r{i}") for i in range(4)]
    for i in range(20):
        alice.say(rooms[i % 4], f"question {i}")
    first = _worker(gemini, threads=20, GEMINI_TIMEOUT="20", REPLY_LEASE_SECONDS="8")
    try:
        wait_for(lambda: all(r.lease_token and r.attempts == 1 for r in model_replies(app)), timeout=30,
                 what="all 20 replies to be claimed", proc=first)
    finally:
        stop(first, sig=signal.SIGKILL)
    assert all(r.status == "pending" for r in model_replies(app)), "the kill must land while replies are in flight"
    time.sleep(8.5)  # the dead consumer's leases run out
    gemini.latency = 0.1
    second = _worker(gemini, threads=8)
    try:
        wait_for(lambda: all(r.status == "complete" for r in model_replies(app)), timeout=60,
                 what="every reply to complete after the crash", proc=second)
    except AssertionError:
        print("replies:", model_replies(app), "\nsecond consumer:\n", stop(second)[-20000:])
        raise
    finally:
        output = stop(second)
    rows = model_replies(app)
    assert len(rows) == 20 and len({r.reply_to for r in rows}) == 20
    contents = sorted(r.content for r in rows)
    assert contents == sorted(f"Echo: question {i}" for i in range(20)), contents
    assert "Traceback" not in output


def test_r8_sigint_lets_the_running_reply_finish(app, client, gemini):
    """R8: SIGINT while a reply is being generated: the consumer finishes and stores it, then exits."""
    alice = ChatUser(app, client)
    gemini.latency = 2.0
    room = alice.room()
    posted = alice.say(room, "finish me")
    # The timeout stays well above the latency: a timed-out call would be a retry, not a finished reply.
    proc = _worker(gemini, threads=2, GEMINI_TIMEOUT="15")
    wait_for(lambda: model_replies(app)[0].lease_token, timeout=20, what="the reply to be claimed", proc=proc)
    output = stop(proc, sig=signal.SIGINT)
    reply = alice.reply(room, posted["reply"]["id"])
    assert reply["status"] == "complete" and reply["content"] == "Echo: finish me", output[-4000:]
    assert "Traceback" not in output


@pytest.mark.skipif(BACKEND.name != "services", reason="breaks the queue by pointing QUEUE_URL at a dead Redis")
def test_r5_enqueue_failure_still_answers_202_and_the_sweeper_delivers(app, gemini):
    """R5: with the queue unreachable at post time the post is 202; a consumer's sweeper produces the reply."""
    from tests.factories import auth_headers, create_user
    port = free_port()
    web = start_web(port, QUEUE_URL="redis://127.0.0.1:1/0")
    try:
        user_id = create_user(app, pro=True)
        headers = auth_headers(app, user_id)
        _, room, _ = http_json(port, "POST", "/chatroom", headers, {"name": "r5"})
        status, posted, _ = http_json(port, "POST", f"/chatroom/{room['id']}/message", headers,
                                      {"content": "queue is down"})
        assert status == 202 and posted["reply"]["status"] == "pending"
    finally:
        stop(web)
    time.sleep(1.2)  # past REPLY_SWEEP_GRACE, so the sweeper treats it as never enqueued
    worker = _worker(gemini, threads=2)
    try:
        wait_for(lambda: model_replies(app)[0].status == "complete", timeout=30, what="the swept reply", proc=worker)
    finally:
        stop(worker)
    assert model_replies(app)[0].content == "Echo: queue is down"
