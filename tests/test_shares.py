"""Share links: a frozen snapshot of the active branch, read without a token; unguessable ids; revoked or deleted
-> 404; another user's room -> 404 (S11); what a snapshot leaves out; the per-IP limit on the public read."""
import base64
import re

import pytest
import schemathesis
from schemathesis.checks import content_type_conformance
from schemathesis.specs.openapi.checks import (response_headers_conformance, response_schema_conformance,
                                               status_code_conformance)
from sqlalchemy import func, select, update

from gemini_backend.extensions import db
from gemini_backend.models import Message, MessageAttachment, Share, StoredFile, utcnow
from gemini_backend.schemas.shares import SHARED_MESSAGE_FIELDS
from tests.chat_helpers import ChatUser

SHARE_URL = re.compile(r"^http://localhost/shared/([A-Za-z0-9_-]+)$")


def _conforms(app, response, path: str, method: str = "GET", **path_parameters) -> None:
    """The response is one the OpenAPI document describes: status, content type, headers and body."""
    schema = schemathesis.openapi.from_dict(app.test_client().get("/openapi.json").json)
    case = schema[path][method].Case(path_parameters=path_parameters or None)
    case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                             response_schema_conformance, response_headers_conformance])


def _finish(app, reply_id: int, content: str, **values) -> None:
    """Give a pending reply its end (nothing consumes the queue in these tests)."""
    with app.app_context():
        db.session.execute(update(Message).where(Message.id == reply_id).values(
            status="complete", content=content, completed_at=utcnow(), **values))
        db.session.commit()


def _share_path(share: dict) -> str:
    return "/shared/" + SHARE_URL.match(share["url"]).group(1)


@pytest.fixture()
def alice(app, client):
    return ChatUser(app, client, pro=True)


@pytest.fixture()
def bob(app, client):
    return ChatUser(app, client, pro=True)


def test_the_link_shows_a_frozen_snapshot_without_a_token(app, client, alice):
    room = alice.room("Trip to Lisbon")
    first = alice.say(room, "Plan a trip")
    _finish(app, first["reply"]["id"], "Day 1: Alfama.")
    r = alice.post(f"/chatroom/{room}/shares")
    assert r.status_code == 201, r.json
    _conforms(app, r, "/chatroom/{room_id}/shares", "POST", room_id=room)
    share = r.json
    assert set(share) == {"id", "url", "created_at"}
    assert SHARE_URL.match(share["url"]).group(1) == share["id"]

    # Later messages, renames and branches change nothing behind the link.
    alice.say(room, "And day 2?")
    alice.patch(f"/chatroom/{room}", json={"name": "Renamed"})
    alice.post(f"/chatroom/{room}/message", json={"content": "Plan a cruise", "parent_id": None})
    r = client.get(_share_path(share))  # no token
    assert r.status_code == 200, r.json
    assert r.json["chatroom_name"] == "Trip to Lisbon"
    assert r.json["created_at"] == share["created_at"]
    assert [(m["id"], m["role"], m["content"], m["status"]) for m in r.json["messages"]] == [
        (first["message"]["id"], "user", "Plan a trip", "complete"),
        (first["reply"]["id"], "model", "Day 1: Alfama.", "complete")]
    assert r.headers["X-Robots-Tag"].startswith("noindex")
    assert r.headers["Cache-Control"] == "no-store"  # a revoked link must not live on in a cache
    _conforms(app, r, "/shared/{share_id}", share_id=share["id"])


def test_a_snapshot_leaves_out_what_is_private(app, client, alice):
    """Only SHARED_MESSAGE_FIELDS: the owner's rating and comment, token counts, error details, attachments and the
    room id stay private; a reply still being written is left out (frozen, it would stay pending forever)."""
    room = alice.room()
    first = alice.say(room, "Question one")
    _finish(app, first["reply"]["id"], "Answer one", usage={
        "prompt_tokens": 1, "output_tokens": 2, "thinking_tokens": 0, "cached_tokens": 0, "total_tokens": 3})
    assert alice.put(f"/chatroom/{room}/message/{first['reply']['id']}/feedback",
                     json={"rating": "down", "comment": "my private complaint"}).status_code == 200
    second = alice.say(room, "Question two")  # its reply stays pending
    with app.app_context():  # a file sent with the second question
        stored = StoredFile(user_id=alice.id, name="secret-scan.pdf", mime_type="application/pdf", size=4,
                            sha256="0" * 64, data=b"%PDF", created_at=utcnow())
        db.session.add(stored)
        db.session.flush()
        db.session.add(MessageAttachment(message_id=second["message"]["id"], file_id=stored.id, position=0))
        db.session.commit()
    assert alice.get(f"/chatroom/{room}").json["messages"][2]["attachments"][0]["name"] == "secret-scan.pdf"
    share = alice.post(f"/chatroom/{room}/shares").json
    r = client.get(_share_path(share))
    assert [m["id"] for m in r.json["messages"]] == [first["message"]["id"], first["reply"]["id"],
                                                     second["message"]["id"]]
    for message in r.json["messages"]:
        assert set(message) == set(SHARED_MESSAGE_FIELDS)
    assert "private complaint" not in r.get_data(as_text=True) and "secret-scan" not in r.get_data(as_text=True)
    with app.app_context():  # not stored either
        assert "private complaint" not in str(db.session.get(Share, share["id"]).messages)


def test_an_empty_room_has_nothing_to_share(alice):
    room = alice.room()
    r = alice.post(f"/chatroom/{room}/shares")
    assert r.status_code == 409 and r.json["error"] == "nothing_to_share"


def test_share_ids_are_unguessable(app, alice):
    room = alice.room()
    alice.say(room, "hi")
    ids = [alice.post(f"/chatroom/{room}/shares").json["id"] for _ in range(20)]
    assert len(set(ids)) == 20
    for share_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", share_id)
        assert len(base64.urlsafe_b64decode(share_id + "=")) * 8 >= 128  # 256 bits of secrets.token_urlsafe
    # Random, not a counter or a timestamp: the characters spread over the whole alphabet.
    assert len(set("".join(ids))) > 50


def test_list_and_revoke(app, client, alice):
    room = alice.room()
    alice.say(room, "hi")
    older = alice.post(f"/chatroom/{room}/shares").json
    newer = alice.post(f"/chatroom/{room}/shares").json
    r = alice.get(f"/chatroom/{room}/shares")
    assert r.status_code == 200
    assert {s["id"] for s in r.json["shares"]} == {older["id"], newer["id"]}
    assert r.json["shares"][0]["url"] in (older["url"], newer["url"])
    _conforms(app, r, "/chatroom/{room_id}/shares", room_id=room)

    r = alice.delete(f"/chatroom/{room}/shares/{older['id']}")
    assert r.status_code == 204
    _conforms(app, r, "/chatroom/{room_id}/shares/{share_id}", "DELETE", room_id=room, share_id=older["id"])
    r = client.get(_share_path(older))
    assert r.status_code == 404 and r.json["error"] == "share_not_found" and r.json["code"] == 404
    _conforms(app, r, "/shared/{share_id}", share_id=older["id"])
    assert client.get(_share_path(newer)).status_code == 200  # the other link still works
    assert alice.delete(f"/chatroom/{room}/shares/{older['id']}").status_code == 404  # already revoked
    assert [s["id"] for s in alice.get(f"/chatroom/{room}/shares").json["shares"]] == [newer["id"]]


def test_deleting_the_room_revokes_its_shares(app, client, alice):
    room = alice.room()
    alice.say(room, "hi")
    share = alice.post(f"/chatroom/{room}/shares").json
    assert alice.delete(f"/chatroom/{room}").status_code == 204
    r = client.get(_share_path(share))
    assert r.status_code == 404 and r.json["error"] == "share_not_found"
    with app.app_context():  # the row is gone (foreign key cascade), not only hidden
        assert db.session.scalar(select(func.count()).select_from(Share)) == 0


def test_another_users_room_or_share_is_404(client, alice, bob):
    """S11: create, list and revoke on another user's room are 404, and bob's own room cannot reach alice's share."""
    room = alice.room()
    alice.say(room, "hi")
    share = alice.post(f"/chatroom/{room}/shares").json
    for response in (bob.post(f"/chatroom/{room}/shares"), bob.get(f"/chatroom/{room}/shares"),
                     bob.delete(f"/chatroom/{room}/shares/{share['id']}")):
        assert response.status_code == 404 and response.json["error"] == "chatroom_not_found", response.json
    bob_room = bob.room()
    r = bob.delete(f"/chatroom/{bob_room}/shares/{share['id']}")
    assert r.status_code == 404 and r.json["error"] == "share_not_found"
    assert bob.get(f"/chatroom/{bob_room}/shares").json == {"shares": []}
    other_room = alice.room()  # alice's share belongs to its own room only
    assert alice.delete(f"/chatroom/{other_room}/shares/{share['id']}").status_code == 404
    assert client.get(_share_path(share)).status_code == 200
    for path in (f"/chatroom/{room}/shares", f"/chatroom/{room}/shares/{share['id']}"):
        assert client.get(path).status_code in (401, 405)
    assert client.post(f"/chatroom/{room}/shares").status_code == 401
    assert client.delete(f"/chatroom/{room}/shares/{share['id']}").status_code == 401


@pytest.mark.parametrize("share_id", ["nope", "x" * 43, "%00", "a%00b", "A" * 5000, "..%2F..%2Fetc", "é", "abc%0A"])
def test_unknown_links_are_404_in_the_error_shape(client, share_id):
    r = client.get(f"/shared/{share_id}")
    assert r.status_code == 404, r.get_data(as_text=True)[:300]
    assert set(r.json) == {"code", "status", "error", "message"} and r.json["code"] == 404


def test_the_url_follows_the_scheme_and_host_the_trusted_proxy_reports(make_app):
    app = make_app(TRUSTED_PROXY_HOPS=1)
    alice = ChatUser(app, app.test_client())
    room = alice.room()
    alice.say(room, "hi")
    r = alice.post(f"/chatroom/{room}/shares", headers={"X-Forwarded-Proto": "https", "Host": "api.example.com",
                                                        "X-Forwarded-For": "203.0.113.9"})
    assert r.json["url"] == f"https://api.example.com/shared/{r.json['id']}"
    # Without trusted hops the forwarded scheme is ignored (it could be forged).
    plain = make_app()
    alice = ChatUser(plain, plain.test_client())
    room = alice.room()
    alice.say(room, "hi")
    r = alice.post(f"/chatroom/{room}/shares", headers={"X-Forwarded-Proto": "https"})
    assert r.json["url"].startswith("http://localhost/shared/")


def test_the_public_read_is_limited_per_ip(make_app):
    app = make_app(SHARE_RATE_LIMIT="3 per minute", TRUSTED_PROXY_HOPS=1)
    alice = ChatUser(app, app.test_client())
    room = alice.room()
    alice.say(room, "hi")
    path = _share_path(alice.post(f"/chatroom/{room}/shares").json)
    client = app.test_client()
    first_ip = {"X-Forwarded-For": "198.51.100.1"}
    assert [client.get(path, headers=first_ip).status_code for _ in range(3)] == [200, 200, 200]
    r = client.get(path, headers=first_ip)
    assert r.status_code == 429 and r.json["error"] == "rate_limited" and int(r.headers["Retry-After"]) > 0
    _conforms(app, r, "/shared/{share_id}", share_id=path.rsplit("/", 1)[1])
    assert client.get("/shared/unknown", headers=first_ip).status_code == 429  # guessing costs the same
    assert client.get(path, headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200  # another client


# Last: the `worker` fixture's consumer runs until the module ends, and would answer the replies the tests above
# leave pending.
def test_a_real_conversation_shared_then_continued(app, client, gemini, worker):
    alice = ChatUser(app, client)
    room = alice.room("Colours")
    posted = alice.say(room, "Name a colour")
    reply = alice.finished_reply(room, posted["reply"]["id"])
    assert reply["status"] == "complete"
    share = alice.post(f"/chatroom/{room}/shares").json
    later = alice.say(room, "Another one")
    alice.finished_reply(room, later["reply"]["id"])
    r = client.get(_share_path(share))
    assert [(m["role"], m["content"]) for m in r.json["messages"]] == [("user", "Name a colour"),
                                                                       ("model", reply["content"])]
    assert alice.get(f"/chatroom/{room}").json["message_count"] == 4  # the room went on; the link did not
