"""Room titles: a room still named "New chat" is named by Gemini after its first reply, with no quota and never over
the user's own name. The real consumer and SDK against the fake Gemini."""
import time

from gemini_backend.services.titles import clean_title
from tests.chat_helpers import ChatUser
from tests.fakes.gemini import default_reply
from tests.helpers import wait_for

TITLE = '"Three days in Lisbon."'


def _titling(body: dict) -> str:
    """The fake's answer: a title for the title prompt, the usual echo otherwise."""
    asked = body["contents"][-1]["parts"][0]["text"]
    return TITLE if asked.startswith("Write a title") else default_reply(body)


def test_a_new_chat_is_named_after_its_first_reply(app, client, gemini, worker):
    gemini.reply_fn = _titling
    alice = ChatUser(app, client)
    room = alice.post("/chatroom").json["id"]
    posted = alice.say(room, "Plan three days in Lisbon")
    assert alice.finished_reply(room, posted["reply"]["id"])["status"] == "complete"
    wait_for(lambda: alice.get(f"/chatroom/{room}").json["name"] == "Three days in Lisbon", timeout=10,
             what="the room to be titled")
    assert [r["name"] for r in alice.get("/chatroom").json["chatrooms"]] == ["Three days in Lisbon"]
    title_call = [call for call in gemini.requests if not call["stream"]]
    assert len(title_call) == 1 and "Plan three days in Lisbon" in title_call[0]["body"]["contents"][0]["parts"][0]["text"]
    assert alice.get("/user/usage").json["used_today"] == 1, "the title uses no quota"


def test_a_room_the_user_named_is_never_titled(app, client, gemini, worker):
    gemini.reply_fn = _titling
    alice = ChatUser(app, client)
    room = alice.room("My trip")
    posted = alice.say(room, "Plan three days in Lisbon")
    assert alice.finished_reply(room, posted["reply"]["id"])["status"] == "complete"
    assert alice.get(f"/chatroom/{room}").json["name"] == "My trip"
    assert [call for call in gemini.requests if not call["stream"]] == []


def test_a_rename_while_gemini_thinks_of_a_title_wins(app, client, gemini, worker):
    """The title is written only while the room still has the default name: the user renames it while the title
    request is in flight, and keeps their name."""
    gemini.reply_fn = _titling
    gemini.script = [("reply", None), ("timeout", 1.5)]  # the reply at once; the title request stalls 1.5 s
    alice = ChatUser(app, client)
    room = alice.post("/chatroom").json["id"]
    posted = alice.say(room, "Plan three days in Lisbon")
    assert alice.finished_reply(room, posted["reply"]["id"])["status"] == "complete"
    wait_for(lambda: [call for call in gemini.requests if not call["stream"]], timeout=10,
             what="the title request")
    asked_at = time.monotonic()
    assert alice.patch(f"/chatroom/{room}", json={"name": "Mine"}).status_code == 200
    time.sleep(max(0.0, asked_at + 2.5 - time.monotonic()))  # past the stall: the title has come and been refused
    assert alice.get(f"/chatroom/{room}").json["name"] == "Mine"


def test_titles_are_cleaned_to_one_short_line():
    assert clean_title('"Lisbon in Three Days."') == "Lisbon in Three Days"
    assert clean_title("Title: **Trip planning** for a long weekend in Lisbon") == "Trip planning for a long weekend"
    assert clean_title("snake_case tips\nsecond line") == "snake_case tips"
    assert clean_title(" \n ") is None


def test_a_failed_title_leaves_the_name_and_the_next_reply_tries_again(app, client, gemini, worker):
    gemini.reply_fn = _titling
    gemini.script = [("reply", None), ("error", 400)]  # the first reply streams; its title request is refused
    alice = ChatUser(app, client)
    room = alice.post("/chatroom").json["id"]
    first = alice.say(room, "Plan three days in Lisbon")
    assert alice.finished_reply(room, first["reply"]["id"])["status"] == "complete"
    wait_for(lambda: not gemini.script and len(gemini.requests) == 2, timeout=10, what="the refused title request")
    assert alice.get(f"/chatroom/{room}").json["name"] == "New chat"
    second = alice.say(room, "And a fourth day?")
    assert alice.finished_reply(room, second["reply"]["id"])["status"] == "complete"
    wait_for(lambda: alice.get(f"/chatroom/{room}").json["name"] == "Three days in Lisbon", timeout=10,
             what="the room to be titled after its second reply")
