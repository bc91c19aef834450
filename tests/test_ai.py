"""The Gemini client: the real google-genai SDK against a fake Gemini speaking Google's wire format."""

from __future__ import annotations

import pickle
import socket
import time

import pytest

from gemini_backend.ai import (
    AiBlocked,
    AiError,
    GeminiClient,
    GeminiSettings,
    Turn,
    build_contents,
    estimate_tokens,
    get_client,
)
from tests.fakes.gemini import FakeGemini

SYSTEM = "You are a test assistant."


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


@pytest.fixture
def settings(fake):
    return GeminiSettings(api_key="test-key", base_url=fake.base_url, timeout=1.0, system_instruction=SYSTEM)


@pytest.fixture
def client(settings):
    gemini = GeminiClient(settings)
    yield gemini
    gemini.close()


def ask(text: str = "Hello") -> list[Turn]:
    return [Turn("user", text)]


def texts(body: dict) -> list[tuple[str, str]]:
    """(role, text) of each content the SDK sent."""
    return [(c["role"], "".join(p["text"] for p in c["parts"])) for c in body["contents"]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- replies ------------------------------------------------------------------


def test_generate_returns_the_model_text(client, fake):
    """A normal reply is Gemini's text, fetched with one POST to models/{model}:generateContent carrying the key."""
    assert client.generate(ask("Hello")) == "Echo: Hello"
    [request] = fake.requests
    assert request["path"].endswith("/models/gemini-2.5-flash:generateContent")
    assert request["stream"] is False
    assert request["api_key"] == "test-key"


def test_history_is_sent_as_multi_turn_contents_with_the_system_instruction(client, fake):
    """The room's history becomes alternating user/model contents, and the system instruction travels separately."""
    history = [Turn("user", "Hi"), Turn("model", "Hello! How can I help?"), Turn("user", "Tell me a joke")]
    assert client.generate(history) == "Echo: Tell me a joke"
    body = fake.requests[0]["body"]
    assert texts(body) == [("user", "Hi"), ("model", "Hello! How can I help?"), ("user", "Tell me a joke")]
    assert body["systemInstruction"]["parts"] == [{"text": SYSTEM}]


def test_old_turns_beyond_the_token_budget_are_not_sent(fake):
    """With a small budget only the newest turns that fit reach Gemini, and the first one sent is a user turn."""
    settings = GeminiSettings(api_key="k", base_url=fake.base_url, timeout=1.0, history_token_budget=10)
    history = [
        Turn("user", "a" * 400),  # 100 tokens: over budget, dropped
        Turn("model", "b" * 8),  # fits, but would lead: dropped
        Turn("user", "c" * 8),
        Turn("model", "d" * 8),
        Turn("user", "e" * 8),
    ]
    GeminiClient(settings).generate(history)
    assert texts(fake.requests[0]["body"]) == [("user", "c" * 8), ("model", "d" * 8), ("user", "e" * 8)]


def test_one_client_and_connection_serve_many_calls(settings, fake):
    """get_client caches one client per settings, and consecutive calls reuse one HTTP connection."""
    assert get_client(settings) is get_client(settings)
    gemini = get_client(settings)
    gemini.generate(ask("one"))
    gemini.generate(ask("two"))
    first, second = fake.requests
    assert first["client_port"] == second["client_port"]


# -- build_contents -----------------------------------------------------------


def test_estimate_tokens_counts_utf8_bytes_over_four():
    """The estimate is ceil(UTF-8 bytes / 4), so non-ASCII text is not undercounted."""
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("é" * 4) == 2  # 8 bytes


def test_build_contents_merges_same_role_turns_and_skips_blank_ones():
    """Consecutive same-role turns (e.g. after a failed reply was left out) become one content; blank turns vanish."""
    history = [
        Turn("user", "first"),
        Turn("user", "  "),
        Turn("user", "second"),
        Turn("model", "answer"),
        Turn("user", "third"),
    ]
    contents = build_contents(history, 1000)
    assert [(c.role, c.parts[0].text) for c in contents] == [
        ("user", "first\n\nsecond"),
        ("model", "answer"),
        ("user", "third"),
    ]


def test_build_contents_truncates_an_oversized_last_user_turn_from_the_front():
    """A last user turn bigger than the whole budget is kept, cut to its end, and nothing older is sent."""
    question = "x" * 100 + "the actual question?"
    contents = build_contents([Turn("user", "earlier"), Turn("model", "reply"), Turn("user", question)], 5)
    assert [(c.role, c.parts[0].text) for c in contents] == [("user", question[-20:])]


def test_build_contents_answers_the_last_user_turn():
    """Model turns after the last user turn and before the first one are not sent; no user turn means nothing."""
    history = [Turn("model", "Welcome!"), Turn("user", "question"), Turn("model", "stale draft")]
    assert [(c.role, c.parts[0].text) for c in build_contents(history, 100)] == [("user", "question")]
    assert build_contents([Turn("model", "alone")], 100) == []


# -- provider errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, "rate_limited"), (500, "provider_unavailable"), (503, "provider_unavailable")],
)
def test_rate_limits_and_server_errors_are_transient_and_not_retried_by_the_sdk(client, fake, status, code):
    """429 and 5xx become transient AiErrors after exactly one request: Huey, not the SDK, does the retrying."""
    fake.script.append(("error", status))
    with pytest.raises(AiError) as caught:
        client.generate(ask())
    assert (caught.value.code, caught.value.transient) == (code, True)
    assert len(fake.requests) == 1


def test_a_bad_request_is_permanent_and_carries_the_provider_message(client, fake):
    """A 400 is provider_rejected, not transient, and its message quotes what Gemini said."""
    fake.script.append(("error", 400, "Unsupported model parameter."))
    with pytest.raises(AiError) as caught:
        client.generate(ask())
    assert caught.value.code == "provider_rejected"
    assert caught.value.transient is False
    assert "Unsupported model parameter." in caught.value.message


def test_a_slow_gemini_times_out_as_a_transient_error(fake):
    """When Gemini answers later than settings.timeout the call gives up on time with provider_timeout."""
    gemini = GeminiClient(GeminiSettings(api_key="k", base_url=fake.base_url, timeout=0.3))
    fake.script.append(("timeout", 5))
    started = time.monotonic()
    with pytest.raises(AiError) as caught:
        gemini.generate(ask())
    assert (caught.value.code, caught.value.transient) == ("provider_timeout", True)
    assert time.monotonic() - started < 2


def test_an_unreachable_gemini_is_a_transient_error():
    """Connection refused (nothing listening) becomes a transient provider_unreachable."""
    gemini = GeminiClient(GeminiSettings(api_key="k", base_url=f"http://127.0.0.1:{closed_port()}", timeout=1.0))
    with pytest.raises(AiError) as caught:
        gemini.generate(ask())
    assert (caught.value.code, caught.value.transient) == ("provider_unreachable", True)


def test_a_blocked_prompt_raises_ai_blocked_naming_the_reason(client, fake):
    """promptFeedback.blockReason ends the reply as blocked (not retried) with the reason in code and message."""
    fake.script.append(("block_prompt", "PROHIBITED_CONTENT"))
    with pytest.raises(AiBlocked) as caught:
        client.generate(ask())
    assert caught.value.code == "blocked_prohibited_content"
    assert caught.value.transient is False
    assert "PROHIBITED_CONTENT" in caught.value.message


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "BLOCKLIST", "SPII"])
def test_an_answer_stopped_by_a_filter_raises_ai_blocked(client, fake, reason):
    """A candidate whose finishReason is a safety/policy stop is a block, not an answer."""
    fake.script.append(("block_finish", reason))
    with pytest.raises(AiBlocked) as caught:
        client.generate(ask())
    assert caught.value.code == f"blocked_{reason.lower()}"
    assert reason in caught.value.message


def test_an_answer_without_text_is_a_transient_empty_response(client, fake):
    """A candidate with no text parts is empty_response, which a retry may fix."""
    fake.script.append(("empty",))
    with pytest.raises(AiError) as caught:
        client.generate(ask())
    assert (caught.value.code, caught.value.transient) == ("empty_response", True)


def test_without_an_api_key_nothing_is_sent(fake):
    """No key is ai_not_configured (permanent) for both calls, raised before any request reaches Gemini."""
    gemini = GeminiClient(GeminiSettings(api_key=None, base_url=fake.base_url))
    for call in (gemini.generate, lambda history: next(gemini.stream(history))):
        with pytest.raises(AiError) as caught:
            call(ask())
        assert (caught.value.code, caught.value.transient) == ("ai_not_configured", False)
    assert fake.requests == []


def test_ai_errors_survive_pickling():
    """Task queues pickle exceptions; code, message and transient must come back intact."""
    for error in (AiError("rate_limited", "slow down", True), AiBlocked("blocked_safety", "blocked (SAFETY)")):
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), copy.code, copy.message, copy.transient) == (
            type(error),
            error.code,
            error.message,
            error.transient,
        )


def test_settings_come_from_the_app_config():
    """from_config reads the GEMINI_* keys, treating blank strings as unset."""
    settings = GeminiSettings.from_config(
        {
            "GEMINI_API_KEY": "key",
            "GEMINI_MODEL": "gemini-2.5-pro",
            "GEMINI_BASE_URL": "",
            "GEMINI_TIMEOUT": "2.5",
            "GEMINI_SYSTEM_INSTRUCTION": "Be kind.",
            "GEMINI_HISTORY_TOKEN_BUDGET": 500,
        }
    )
    assert settings == GeminiSettings("key", "gemini-2.5-pro", None, 2.5, "Be kind.", 500)
    assert GeminiSettings.from_config({}).api_key is None


# -- streaming ----------------------------------------------------------------


def test_stream_yields_chunks_in_order_as_they_arrive(client, fake):
    """Streaming uses streamGenerateContent?alt=sse and yields each chunk when it arrives; they join to the answer."""
    fake.chunk_count, fake.chunk_delay = 4, 0.15
    started = time.monotonic()
    arrivals, chunks = [], []
    for chunk in client.stream(ask("stream this answer")):
        arrivals.append(time.monotonic() - started)
        chunks.append(chunk)
    assert len(chunks) == 4
    assert "".join(chunks) == "Echo: stream this answer"
    assert arrivals[0] < arrivals[-1] - 0.3  # the first chunk did not wait for the last
    assert fake.requests[0]["stream"] is True


@pytest.mark.parametrize(
    ("behaviour", "code", "transient"),
    [
        (("error", 429), "rate_limited", True),
        (("error", 503), "provider_unavailable", True),
        (("error", 400), "provider_rejected", False),
        (("error_mid_stream", 500), "provider_unavailable", True),
        (("disconnect",), "provider_unreachable", True),
        (("block_prompt", "SAFETY"), "blocked_safety", False),
        (("block_finish", "SAFETY"), "blocked_safety", False),
        (("empty",), "empty_response", True),
    ],
)
def test_stream_errors_map_like_generate(client, fake, behaviour, code, transient):
    """Errors before the stream starts, in the middle of it (after some text) and blocks map to the same AiErrors."""
    fake.script.append(behaviour)
    with pytest.raises(AiError) as caught:
        list(client.stream(ask()))
    assert (caught.value.code, caught.value.transient) == (code, transient)
    assert isinstance(caught.value, AiBlocked) == code.startswith("blocked_")
    assert len(fake.requests) == 1


def test_a_stalled_stream_times_out(fake):
    """A stream whose next chunk is later than settings.timeout fails with provider_timeout."""
    gemini = GeminiClient(GeminiSettings(api_key="k", base_url=fake.base_url, timeout=0.3))
    fake.chunk_count, fake.chunk_delay = 2, 2.0
    with pytest.raises(AiError) as caught:
        list(gemini.stream(ask()))
    assert (caught.value.code, caught.value.transient) == ("provider_timeout", True)
