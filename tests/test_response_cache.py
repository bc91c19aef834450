"""GEMINI_RESPONSE_CACHE_TTL: an identical request within the TTL reuses the stored answer."""
import pytest

from tests.chat_helpers import ChatUser
from tests.conftest import WORKER_ENV
from tests.helpers import start_worker, stop


@pytest.fixture()
def cached_worker(app, fake_gemini):
    fake_gemini.reset()
    proc = start_worker(threads=2, GEMINI_BASE_URL=fake_gemini.base_url,
                        **{**WORKER_ENV, "GEMINI_RESPONSE_CACHE_TTL": "60"})
    yield proc
    stop(proc)


def test_identical_request_reuses_the_answer(app, client, fake_gemini, cached_worker):
    """Two rooms asking the same first question: Gemini is called once; a different question calls it again."""
    alice = ChatUser(app, client, pro=True)
    answers = []
    for question in ("What is 2+2?", "What is 2+2?", "What is 3+3?"):
        room = alice.room()
        posted = alice.say(room, question)
        answers.append(alice.finished_reply(room, posted["reply"]["id"])["content"])
    assert answers == ["Echo: What is 2+2?", "Echo: What is 2+2?", "Echo: What is 3+3?"]
    assert len(fake_gemini.requests) == 2
