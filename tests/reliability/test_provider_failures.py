"""R4: Gemini fails (429, 500, 503, timeouts, a permanent 400, safety blocks), then recovers; with a real
`flask worker` consumer process, the real google-genai SDK and the fake Gemini server."""
import pytest


def test_r4_timeouts_and_outage_then_recovery(alice, gemini, worker):
    """R4: a timeout (Gemini slower than GEMINI_TIMEOUT) and a 503 are retried; the reply completes once."""
    gemini.script = [("timeout", 3.0), ("error", 503)]
    room = alice.room()
    posted = alice.say(room, "slow day")
    done = alice.finished_reply(room, posted["reply"]["id"], timeout=30)
    assert done["status"] == "complete" and done["content"] == "Echo: slow day"
    assert alice.usage_used() == 1


def test_transient_errors_are_retried(alice, gemini, worker):
    """A 429 then a 500 from Gemini are retried with backoff; the reply completes once."""
    gemini.script = [("error", 429), ("error", 500)]
    room = alice.room()
    posted = alice.say(room, "try again")
    done = alice.finished_reply(room, posted["reply"]["id"])
    assert done["status"] == "complete" and done["content"] == "Echo: try again"
    assert len([r for r in gemini.requests if "try again" in str(r["body"])]) == 3


def test_permanent_error_fails_with_reason_and_refunds(alice, gemini, worker):
    """A 400 ends the reply failed with a readable reason, and the quota unit is given back."""
    gemini.script = [("error", 400, "Invalid model argument.")]
    room = alice.room()
    posted = alice.say(room, "bad")
    done = alice.finished_reply(room, posted["reply"]["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "provider_rejected"
    assert "Invalid model argument" in done["error"]["message"]
    assert alice.usage_used() == 0


def test_retries_run_out(alice, gemini, worker):
    """Transient errors past REPLY_MAX_ATTEMPTS (3 here) end failed, naming the last error."""
    gemini.script = [("error", 503)] * 3
    room = alice.room()
    posted = alice.say(room, "never")
    done = alice.finished_reply(room, posted["reply"]["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "provider_unavailable"
    assert "3 attempts" in done["error"]["message"] and alice.usage_used() == 0


@pytest.mark.parametrize("behaviour", [("block_prompt", "SAFETY"), ("block_finish", "SAFETY")])
def test_safety_block_ends_blocked_and_refunds(alice, gemini, worker, behaviour):
    """A prompt block or a SAFETY finish ends the reply blocked with the reason; the unit comes back."""
    gemini.script = [behaviour]
    room = alice.room()
    posted = alice.say(room, "something bad")
    done = alice.finished_reply(room, posted["reply"]["id"])
    assert done["status"] == "blocked" and "safety" in done["error"]["code"].lower()
    assert alice.usage_used() == 0
