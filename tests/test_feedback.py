"""PUT …/message/{id}/feedback: a user rates a reply up or down, with a comment; it shows wherever the reply does."""
import pytest

from tests.chat_helpers import ChatUser


def _exchange(user: ChatUser) -> tuple[int, dict]:
    room = user.room()
    return room, user.say(room, "Rate my answer")


def test_a_rating_and_comment_show_on_the_reply_everywhere(alice):
    room, posted = _exchange(alice)
    reply_id = posted["reply"]["id"]
    assert posted["reply"]["feedback"] is None and posted["message"]["feedback"] is None
    r = alice.put(f"/chatroom/{room}/message/{reply_id}/feedback", json={"rating": "up", "comment": " spot on "})
    assert r.status_code == 200, r.json
    feedback = r.json["feedback"]
    assert (feedback["rating"], feedback["comment"]) == ("up", "spot on")
    assert feedback["updated_at"].endswith("+00:00")
    assert alice.reply(room, reply_id)["feedback"] == feedback
    assert [m["feedback"] for m in alice.get(f"/chatroom/{room}").json["messages"]] == [None, feedback]
    assert [m["feedback"] for m in alice.get(f"/chatroom/{room}/messages").json["messages"]] == [None, feedback]


def test_a_new_rating_replaces_the_old_and_null_takes_it_back(alice):
    room, posted = _exchange(alice)
    path = f"/chatroom/{room}/message/{posted['reply']['id']}/feedback"
    assert alice.put(path, json={"rating": "up", "comment": "good"}).json["feedback"]["rating"] == "up"
    down = alice.put(path, json={"rating": "down"}).json["feedback"]
    assert (down["rating"], down["comment"]) == ("down", None)
    comment_only = alice.put(path, json={"rating": None, "comment": "too long"}).json["feedback"]
    assert (comment_only["rating"], comment_only["comment"]) == (None, "too long")
    r = alice.put(path, json={"rating": None})
    assert r.status_code == 200 and r.json["feedback"] is None


def test_only_a_reply_takes_feedback(alice):
    room, posted = _exchange(alice)
    r = alice.put(f"/chatroom/{room}/message/{posted['message']['id']}/feedback", json={"rating": "up"})
    assert r.status_code == 409 and r.json["error"] == "not_a_reply"


@pytest.mark.parametrize("body", [{}, {"rating": "meh"}, {"rating": "up", "comment": "x" * 2001}, {"rating": 1}])
def test_bad_feedback_is_422_and_changes_nothing(alice, body):
    room, posted = _exchange(alice)
    reply_id = posted["reply"]["id"]
    r = alice.put(f"/chatroom/{room}/message/{reply_id}/feedback", json=body)
    assert r.status_code == 422 and r.json["error"] == "validation_error", r.json
    assert alice.reply(room, reply_id)["feedback"] is None


def test_another_users_reply_is_404(app, client, alice):
    room, posted = _exchange(alice)
    mallory = ChatUser(app, client)
    r = mallory.put(f"/chatroom/{room}/message/{posted['reply']['id']}/feedback", json={"rating": "down"})
    assert r.status_code == 404 and r.json["error"] == "chatroom_not_found"
    assert alice.reply(room, posted["reply"]["id"])["feedback"] is None
