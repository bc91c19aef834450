"""The history's files under the token budget, with no consumer running in this module (one would claim the reply
first): the claim reads the bytes only of the files whose turns the request sends."""
from __future__ import annotations

from gemini_backend.extensions import db
from gemini_backend.models import Message
from tests.chat_helpers import ChatUser
from tests.test_attachments import png, upload


def test_older_files_beyond_the_budget_are_neither_sent_nor_loaded(make_app):
    """The claim reads the bytes of the files of the turns the request sends only; an older turn whose files no
    longer fit the history budget goes without them (and its bytes are not read)."""
    from gemini_backend.services import replies
    app = make_app(GEMINI_HISTORY_TOKEN_BUDGET=300)  # one small image (258) and a little text
    user = ChatUser(app, app.test_client())
    old_id = upload(user, png(1, 1, (0, 0, 255))).json["id"]
    new_id = upload(user, png(1, 1, (0, 255, 0))).json["id"]
    room = user.room()
    first = user.post(f"/chatroom/{room}/message", json={"content": "old", "attachment_ids": [old_id]}).json
    with app.app_context():  # answer the first exchange by hand: no consumer runs here
        db.session.execute(Message.__table__.update().where(Message.id == first["reply"]["id"])
                           .values(status="complete", content="A blue pixel."))
        db.session.commit()
    second = user.post(f"/chatroom/{room}/message", json={"content": "new", "attachment_ids": [new_id]}).json
    with app.test_request_context():
        claim, history, _ = replies.claim_with_history(second["reply"]["id"])
        db.session.remove()
    assert [(t.role, t.text) for t in history] == [("user", "old"), ("model", "A blue pixel."), ("user", "new")]
    old_file, new_file = history[0].attachments[0], history[2].attachments[0]
    assert old_file.file_id == old_id and old_file.data is None  # does not fit: not read
    assert new_file.file_id == new_id and new_file.data == png(1, 1, (0, 255, 0))
    assert old_file.tokens == new_file.tokens == 258
