"""Replies when Gemini is not configured (its own module: no shared consumer with a key runs here)."""


def test_no_api_key_fails_with_ai_not_configured(app, alice, fake_gemini):
    """Without GEMINI_API_KEY the reply ends failed with ai_not_configured, and Gemini is never called."""
    from tests.helpers import start_worker, stop
    fake_gemini.reset()
    proc = start_worker(threads=1, GEMINI_API_KEY="", GEMINI_BASE_URL=fake_gemini.base_url)
    try:
        room = alice.room()
        posted = alice.say(room, "anyone?")
        done = alice.finished_reply(room, posted["reply"]["id"])
    finally:
        stop(proc)
    assert done["status"] == "failed" and done["error"]["code"] == "ai_not_configured"
    assert fake_gemini.requests == [] and alice.usage_used() == 0
