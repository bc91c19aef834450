"""The message tree: regenerate (both answers kept), edit (a new branch whose history ignores the old one), switching
branches, and the room, pages and history following the active branch. The real consumer and SDK against the fake
Gemini, which records what each reply was asked with."""
import pytest

from tests.chat_helpers import ChatUser


@pytest.fixture()
def alice(app, client, gemini, worker):
    return ChatUser(app, client)


def _branch(user: ChatUser, room: int) -> list[tuple[str, list[int]]]:
    """The room's messages as (content, sibling_ids)."""
    return [(m["content"], m["sibling_ids"]) for m in user.get(f"/chatroom/{room}").json["messages"]]


def _asked_with(gemini) -> list[tuple[str, str]]:
    """The contents of the last streamed request the fake received, as (role, text)."""
    body = [call for call in gemini.requests if call["stream"]][-1]["body"]
    return [(c["role"], "".join(p.get("text", "") for p in c["parts"])) for c in body["contents"]]


def test_regenerate_keeps_both_answers_and_uses_a_unit(alice, gemini):
    room = alice.room()
    question, first = alice.ask(room, "Name a colour")
    gemini.reply_fn = lambda body: "Blue, once more."
    r = alice.post(f"/chatroom/{room}/message/{first['id']}/regenerate")
    assert r.status_code == 202, r.json
    again = r.json
    assert (again["status"], again["reply_to"], again["parent_id"]) == ("pending", question["id"], question["id"])
    assert int(r.headers["X-RateLimit-Remaining"]) == 3
    assert alice.finished_reply(room, again["id"])["content"] == "Blue, once more."
    assert _asked_with(gemini) == [("user", "Name a colour")], "the old answer is not part of the new one's history"
    assert _branch(alice, room) == [("Name a colour", [question["id"]]),
                                    ("Blue, once more.", [first["id"], again["id"]])]  # "2 / 2"
    assert alice.get(f"/chatroom/{room}").json["active_leaf_id"] == again["id"]
    assert alice.get("/user/usage").json["used_today"] == 2
    # Regenerating through the user message does the same.
    r = alice.post(f"/chatroom/{room}/message/{question['id']}/regenerate")
    assert r.status_code == 202 and r.json["reply_to"] == question["id"]
    alice.finished_reply(room, r.json["id"])
    assert _branch(alice, room)[1][1] == [first["id"], again["id"], r.json["id"]]


def test_edit_starts_a_branch_whose_history_ignores_the_old_one(alice, gemini):
    room = alice.room()
    q1, r1 = alice.ask(room, "My name is Ada.")
    q2, r2 = alice.ask(room, "What is my name?")
    assert _asked_with(gemini) == [("user", "My name is Ada."), ("model", "Echo: My name is Ada."),
                                   ("user", "What is my name?")]
    # Edit the first question: post under its parent (the top).
    e1, f1 = alice.ask(room, "My name is Grace.", parent_id=None)
    assert e1["parent_id"] is None and f1["parent_id"] == e1["id"]
    assert _asked_with(gemini) == [("user", "My name is Grace.")]
    assert _branch(alice, room) == [("My name is Grace.", [q1["id"], e1["id"]]), ("Echo: My name is Grace.", [f1["id"]])]
    # A follow-up continues the new branch only.
    alice.ask(room, "And now?")
    assert _asked_with(gemini) == [("user", "My name is Grace."), ("model", "Echo: My name is Grace."),
                                   ("user", "And now?")]
    # Edit the second question of the old branch: under r1.
    e2, _ = alice.ask(room, "What was my name?", parent_id=r1["id"])
    assert _asked_with(gemini) == [("user", "My name is Ada."), ("model", "Echo: My name is Ada."),
                                   ("user", "What was my name?")]
    assert [m[0] for m in _branch(alice, room)] == ["My name is Ada.", "Echo: My name is Ada.", "What was my name?",
                                                   "Echo: What was my name?"]
    assert _branch(alice, room)[2][1] == [q2["id"], e2["id"]]


def test_switching_branches_continues_to_the_newest_descendant(alice):
    room = alice.room()
    q1, r1 = alice.ask(room, "one")
    q2, r2 = alice.ask(room, "two")
    e1, f1 = alice.ask(room, "uno", parent_id=None)
    r = alice.put(f"/chatroom/{room}/active-leaf", json={"message_id": q1["id"]})
    assert r.status_code == 200, r.json
    assert r.json["active_leaf_id"] == r2["id"]
    assert [m["content"] for m in r.json["messages"]] == ["one", "Echo: one", "two", "Echo: two"]
    assert alice.get("/chatroom").json["chatrooms"][0]["active_leaf_id"] == r2["id"]  # the cached list follows
    # The next post continues the branch switched to.
    q3, _ = alice.ask(room, "three")
    assert q3["parent_id"] == r2["id"]
    back = alice.put(f"/chatroom/{room}/active-leaf", json={"message_id": f1["id"]}).json
    assert [m["content"] for m in back["messages"]] == ["uno", "Echo: uno"]


def test_pages_follow_the_active_branch(alice):
    room = alice.room()
    old = [alice.ask(room, f"old {i}") for i in range(2)]
    alice.ask(room, "new 0", parent_id=old[0][1]["id"])  # a branch after the first exchange
    page = alice.get(f"/chatroom/{room}/messages?limit=2").json
    assert [m["content"] for m in page["messages"]] == ["new 0", "Echo: new 0"] and page["has_more"] is True
    older = alice.get(f"/chatroom/{room}/messages?limit=5&before={page['messages'][0]['id']}").json
    assert [m["content"] for m in older["messages"]] == ["old 0", "Echo: old 0"] and older["has_more"] is False
    newer = alice.get(f"/chatroom/{room}/messages?after={old[0][1]['id']}").json
    assert [m["content"] for m in newer["messages"]] == ["new 0", "Echo: new 0"]
    assert alice.get(f"/chatroom/{room}").json["message_count"] == 6  # every branch's messages count


def test_bad_parents_and_leaves_are_refused_and_cost_nothing(alice, app, client):
    room = alice.room()
    question, reply = alice.ask(room, "hi")
    other = alice.room("Other")
    _, elsewhere = alice.ask(other, "elsewhere")
    for parent in (question["id"], elsewhere["id"], 999999):
        r = alice.post(f"/chatroom/{room}/message", json={"content": "x", "parent_id": parent})
        assert r.status_code == 422 and r.json["errors"]["json"]["parent_id"], r.json
    assert alice.post(f"/chatroom/{room}/message", json={"content": "x", "parent_id": "one"}).status_code == 422
    assert alice.get("/user/usage").json["used_today"] == 2
    assert alice.put(f"/chatroom/{room}/active-leaf", json={"message_id": elsewhere["id"]}).status_code == 404
    assert alice.put(f"/chatroom/{room}/active-leaf", json={}).status_code == 422
    bob = ChatUser(app, client)
    assert bob.post(f"/chatroom/{room}/message", json={"content": "x", "parent_id": reply["id"]}).status_code == 404
    assert bob.post(f"/chatroom/{room}/message/{reply['id']}/regenerate").status_code == 404
    assert bob.put(f"/chatroom/{room}/active-leaf", json={"message_id": reply["id"]}).status_code == 404
    assert alice.get(f"/chatroom/{room}").json["active_leaf_id"] == reply["id"]


def test_regenerate_waits_for_the_reply_in_progress_and_for_quota(alice, gemini):
    room = alice.room()
    gemini.latency = 1.5
    posted = alice.say(room, "slow")
    r = alice.post(f"/chatroom/{room}/message/{posted['reply']['id']}/regenerate")
    assert r.status_code == 409 and r.json["error"] == "reply_in_progress", r.json
    assert alice.get("/user/usage").json["used_today"] == 1
    gemini.latency = 0
    alice.finished_reply(room, posted["reply"]["id"])
    for _ in range(4):
        r = alice.post(f"/chatroom/{room}/message/{posted['reply']['id']}/regenerate")
        assert r.status_code == 202, r.json
        alice.finished_reply(room, r.json["id"])
    r = alice.post(f"/chatroom/{room}/message/{posted['reply']['id']}/regenerate")
    assert r.status_code == 429 and r.json["error"] == "daily_limit_reached"
    assert len(_branch(alice, room)[1][1]) == 5, "the refused regeneration left no reply behind"
