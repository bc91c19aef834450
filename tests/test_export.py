"""Export: a room as JSON (the whole message tree) or Markdown (the active branch), and GET /user/export (everything
stored about the user, streamed). Replies come from the real consumer and the fake Gemini where their text matters;
elsewhere they stay pending (nothing consumes the queue) or are given a status directly."""
import hashlib
import json
import re

import pytest
import schemathesis
from schemathesis.checks import content_type_conformance
from schemathesis.specs.openapi.checks import (response_headers_conformance, response_schema_conformance,
                                               status_code_conformance)
from sqlalchemy import update

from gemini_backend.extensions import db
from gemini_backend.models import Message, MessageAttachment, StoredFile, utcnow
from gemini_backend.services.export import PAGE_SIZE
from tests.chat_helpers import ChatUser

SAFE_DISPOSITION = re.compile(r'^attachment; filename="[A-Za-z0-9._-]+"$')


def _conforms(app, response, path: str, method: str = "GET", **path_parameters) -> None:
    """The response is one the OpenAPI document describes: status, content type, headers and body."""
    schema = schemathesis.openapi.from_dict(app.test_client().get("/openapi.json").json)
    case = schema[path][method].Case(path_parameters=path_parameters or None)
    case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                             response_schema_conformance, response_headers_conformance])


def _store_file(app, user_id: int, name: str, data: bytes) -> int:
    with app.app_context():
        row = StoredFile(user_id=user_id, name=name, mime_type="text/plain", size=len(data),
                         sha256=hashlib.sha256(data).hexdigest(), data=data, created_at=utcnow())
        db.session.add(row)
        db.session.commit()
        return row.id


def test_markdown_marks_stopped_failed_and_blocked_replies(app, client):
    alice = ChatUser(app, client, pro=True)
    room = alice.room()
    posts = [alice.say(room, text) for text in ("Tell me a story", "Again", "And once more")]
    replies = [post["reply"]["id"] for post in posts]
    file_id = _store_file(app, alice.id, "my\nnotes.txt", b"0123456789")
    with app.app_context():
        db.session.add(MessageAttachment(message_id=posts[0]["message"]["id"], file_id=file_id, position=0))
        db.session.execute(update(Message).where(Message.id == replies[0]).values(
            status="stopped", content="Once upon a time", completed_at=utcnow()))
        db.session.execute(update(Message).where(Message.id == replies[1]).values(
            status="failed", completed_at=utcnow(), error={"code": "upstream_error", "message": "Gemini is down."}))
        db.session.execute(update(Message).where(Message.id == replies[2]).values(
            status="blocked", completed_at=utcnow(), error={"code": "blocked", "message": "Safety filter."}))
        db.session.commit()
    text = alice.get(f"/chatroom/{room}/export?format=markdown").get_data(as_text=True)
    assert "## Gemini\n\nOnce upon a time\n\n> _Stopped by the user" in text
    assert "> _This reply failed: Gemini is down._" in text
    assert "> _This reply was blocked: Safety filter._" in text
    assert text.count("## You") == 3 and text.count("## Gemini") == 3
    assert "## You\n\nTell me a story\n\n> _Attached: my notes.txt (text/plain, 10 bytes)_\n" in text


def test_download_names_are_safe_whatever_the_room_name(app, client):
    alice = ChatUser(app, client)
    for name in ('../../etc/"passwd"; filename=x.exe', "Ünïcödé 🚀 name", "..."):
        room = alice.room("placeholder")
        alice.patch(f"/chatroom/{room}", json={"name": name})
        for fmt in ("json", "markdown"):
            r = alice.get(f"/chatroom/{room}/export?format={fmt}")
            assert r.status_code == 200
            assert SAFE_DISPOSITION.match(r.headers["Content-Disposition"]), r.headers["Content-Disposition"]
            assert r.headers["Content-Disposition"].startswith(f'attachment; filename="chatroom-{room}')


def test_a_room_title_cannot_break_the_markdown_heading(app, client):
    alice = ChatUser(app, client)
    room = alice.room("placeholder")
    alice.patch(f"/chatroom/{room}", json={"name": "Line one\n## Injected"})
    text = alice.get(f"/chatroom/{room}/export?format=markdown").get_data(as_text=True)
    assert text.splitlines()[0] == "# Line one ## Injected"


def test_another_users_room_and_bad_formats(app, client):
    alice, bob = ChatUser(app, client), ChatUser(app, client)
    room = alice.room()
    for fmt in ("json", "markdown"):
        r = bob.get(f"/chatroom/{room}/export?format={fmt}")
        assert r.status_code == 404 and r.json["error"] == "chatroom_not_found"  # S11: never 403
    assert client.get(f"/chatroom/{room}/export").status_code == 401
    r = alice.get(f"/chatroom/{room}/export?format=pdf")
    assert r.status_code == 422 and r.json["errors"]["query"]["format"]
    assert alice.get(f"/chatroom/{room}/export").json["messages"] == []  # json by default; an empty room


def test_user_export_holds_everything_of_the_user_and_nothing_of_others(app, client):
    alice, bob = ChatUser(app, client), ChatUser(app, client)
    room = alice.room("Alice's room")
    first = alice.say(room, "alice question one")
    alice.post(f"/chatroom/{room}/message", json={"content": "alice edit", "parent_id": None})
    other = alice.room("Alice's other room")
    alice.say(other, "alice other question")
    file_id = _store_file(app, alice.id, "notes.txt", b"alice file bytes")
    with app.app_context():
        db.session.add(MessageAttachment(message_id=first["message"]["id"], file_id=file_id, position=0))
        db.session.execute(update(Message).where(Message.id == first["reply"]["id"]).values(
            status="complete", content="alice answer", completed_at=utcnow(),
            usage={"prompt_tokens": 5, "output_tokens": 7, "thinking_tokens": 0, "cached_tokens": 0,
                   "total_tokens": 12}))
        db.session.commit()
    share = alice.post(f"/chatroom/{room}/shares").json
    bob_room = bob.room("Bob's secret room")
    bob.say(bob_room, "bob-secret question")
    _store_file(app, bob.id, "bob-secret.txt", b"bob bytes")
    bob.post(f"/chatroom/{bob_room}/shares")

    r = alice.get("/user/export")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.is_streamed
    assert re.match(r'^attachment; filename="gemini-backend-export-\d+-\d{4}-\d\d-\d\d\.json"$',
                    r.headers["Content-Disposition"])
    text = r.get_data(as_text=True)
    body = json.loads(text)
    assert set(body) == {"exported_at", "user", "subscription", "usage", "files", "shares", "chatrooms"}
    assert body["user"] == alice.get("/user/me").json
    assert body["subscription"] == alice.get("/subscription/status").json
    usage = alice.get("/user/usage").json
    assert {k: body["usage"][k] for k in ("tier", "used_today", "tokens_today")} == {
        "tier": "basic", "used_today": 3, "tokens_today": 12} == {k: usage[k] for k in ("tier", "used_today",
                                                                                        "tokens_today")}
    assert body["files"] == [{"id": file_id, "name": "notes.txt", "mime_type": "text/plain", "size": 16,
                              "sha256": hashlib.sha256(b"alice file bytes").hexdigest(),
                              "created_at": body["files"][0]["created_at"]}]
    assert [(s["id"], s["url"], s["chatroom_id"]) for s in body["shares"]] == [(share["id"], share["url"], room)]
    assert [m["content"] for m in body["shares"][0]["messages"]] == ["alice edit"]
    rooms = {r["name"]: r for r in body["chatrooms"]}
    assert set(rooms) == {"Alice's room", "Alice's other room"}
    assert [(m["role"], m["content"], m["status"]) for m in rooms["Alice's room"]["messages"]] == [
        ("user", "alice question one", "complete"), ("model", "alice answer", "complete"),
        ("user", "alice edit", "complete"), ("model", "", "pending")]  # both branches
    assert rooms["Alice's room"]["messages"][1]["usage"]["total_tokens"] == 12
    assert rooms["Alice's room"]["messages"][0]["attachments"] == [
        {"id": file_id, "name": "notes.txt", "mime_type": "text/plain", "size": 16}]
    assert rooms["Alice's room"] == alice.get(f"/chatroom/{room}/export").json
    bob_phone = bob.get("/user/me").json["phone"]
    assert "bob-secret" not in text and "Bob's" not in text and bob_phone not in text
    assert "alice file bytes" not in text  # metadata only, never a file's bytes
    _conforms(app, r, "/user/export")


def test_user_export_is_written_a_page_at_a_time(app, client):
    """Thousands of messages: the document comes out in chunks of at most PAGE_SIZE messages, and is valid JSON."""
    alice = ChatUser(app, client)
    room = alice.room()
    total = 2 * PAGE_SIZE + 7
    with app.app_context():
        now = utcnow()
        db.session.execute(Message.__table__.insert(), [
            {"chatroom_id": room, "role": "user", "content": f"message {n}", "status": "complete", "created_at": now,
             "attempts": 0} for n in range(total)])
        db.session.commit()
    r = alice.get("/user/export", buffered=False)
    assert r.is_streamed
    chunks = [chunk.decode() for chunk in r.iter_encoded()]
    r.close()
    per_chunk = [chunk.count('"role":') for chunk in chunks]
    assert sum(per_chunk) == total and max(per_chunk) <= PAGE_SIZE, per_chunk
    body = json.loads("".join(chunks))
    assert [m["content"] for m in body["chatrooms"][0]["messages"]] == [f"message {n}" for n in range(total)]


def test_user_export_needs_a_token(client):
    r = client.get("/user/export")
    assert r.status_code == 401 and r.json["error"] == "token_missing"


@pytest.mark.parametrize("fmt", ["json", "markdown"])
def test_a_deleted_room_is_404(app, client, fmt):
    alice = ChatUser(app, client)
    room = alice.room()
    assert alice.delete(f"/chatroom/{room}").status_code == 204
    assert alice.get(f"/chatroom/{room}/export?format={fmt}").status_code == 404


# Last: the `worker` fixture's consumer runs until the module ends, and would answer the replies the tests above
# leave pending.
def test_json_has_the_whole_tree_and_markdown_the_active_branch(app, client, gemini, worker):
    alice = ChatUser(app, client, pro=True)
    room = alice.room("Trip to Lisbon")
    q1, r1 = alice.ask(room, "My name is Ada.")
    q2, r2 = alice.ask(room, "What is my name?")
    e1, f1 = alice.ask(room, "My name is Grace.", parent_id=None)  # edit the first question: a new branch

    r = alice.get(f"/chatroom/{room}/export?format=json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.is_streamed
    assert r.headers["Content-Disposition"] == f'attachment; filename="chatroom-{room}-Trip_to_Lisbon.json"'
    body = json.loads(r.get_data())
    assert (body["id"], body["name"], body["active_leaf_id"]) == (room, "Trip to Lisbon", f1["id"])
    assert [(m["id"], m["parent_id"], m["content"]) for m in body["messages"]] == [
        (q1["id"], None, "My name is Ada."), (r1["id"], q1["id"], "Echo: My name is Ada."),
        (q2["id"], r1["id"], "What is my name?"), (r2["id"], q2["id"], "Echo: What is my name?"),
        (e1["id"], None, "My name is Grace."), (f1["id"], e1["id"], "Echo: My name is Grace.")]
    assert body["messages"][1] == alice.reply(room, r1["id"])  # the API's own Message fields
    _conforms(app, r, "/chatroom/{room_id}/export", room_id=room)

    r = alice.get(f"/chatroom/{room}/export?format=markdown")
    assert r.status_code == 200 and r.mimetype == "text/markdown"
    assert r.headers["Content-Disposition"] == f'attachment; filename="chatroom-{room}-Trip_to_Lisbon.md"'
    text = r.get_data(as_text=True)
    assert text.startswith("# Trip to Lisbon\n")
    turns = re.findall(r"^## (.+)\n\n(.+)$", text, flags=re.M)
    assert turns == [("You", "My name is Grace."), ("Gemini", "Echo: My name is Grace.")]
    assert "Ada" not in text
    _conforms(app, r, "/chatroom/{room_id}/export", room_id=room)
