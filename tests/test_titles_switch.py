"""AUTO_TITLES: a reply completing in a "New chat" room queues its title task, unless AUTO_TITLES is off (no consumer
runs in this module, so the queue shows what was queued)."""
import pytest

from gemini_backend.extensions import huey
from tests.chat_helpers import ChatUser


@pytest.mark.parametrize("auto_titles, queued", [(True, 1), (False, 0)])
def test_a_completed_reply_queues_a_title_only_when_auto_titles_is_on(make_app, auto_titles, queued):
    from gemini_backend.services.replies import claim_reply, finish
    app = make_app(AUTO_TITLES=auto_titles)
    alice = ChatUser(app, app.test_client())
    room = alice.post("/chatroom").json["id"]
    reply_id = alice.say(room, "hello")["reply"]["id"]
    with app.app_context():
        before = huey.pending_count()
        claim = claim_reply(reply_id)
        assert finish(claim, "complete", content="Hello!") == "complete"
        titles = [t for t in huey.pending() if t.name.endswith("name_room")]
        assert huey.pending_count() - before == queued == len(titles)
