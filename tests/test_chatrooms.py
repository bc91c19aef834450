"""Chatroom routes: CRUD, ordering, pagination, the per-user list cache, and S1 (another user's rooms)."""
import pytest

from tests.conftest import BACKEND


def test_create_with_name_title_or_default(alice):
    """POST /chatroom takes name, its alias title, or nothing ('New chat')."""
    assert alice.post("/chatroom", json={"name": "A"}).json["name"] == "A"
    assert alice.post("/chatroom", json={"title": "B"}).json["name"] == "B"
    r = alice.post("/chatroom")
    assert r.status_code == 201 and r.json["name"] == "New chat"
    assert set(r.json) == {"id", "name", "created_at", "updated_at", "last_message_at", "message_count", "model",
                           "system_instruction", "temperature", "max_output_tokens", "active_leaf_id"}
    assert [r.json[k] for k in ("model", "system_instruction", "temperature", "max_output_tokens")] == [None] * 4


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, 5, None])
def test_bad_names_are_422(alice, name):
    """Names must be 1-100 characters of text."""
    r = alice.post("/chatroom", json={"name": name})
    assert r.status_code == 422 and r.json["error"] == "validation_error"


def test_list_is_newest_activity_first_and_cached(alice):
    """The list orders by last activity; the second read is a cache HIT; a message moves its room first."""
    first, second = alice.room("first"), alice.room("second")
    r = alice.get("/chatroom")
    assert r.headers["X-Cache"] == "MISS" and [c["id"] for c in r.json["chatrooms"]] == [second, first]
    assert alice.get("/chatroom").headers["X-Cache"] == "HIT"
    alice.say(first, "hello")
    r = alice.get("/chatroom")
    assert r.headers["X-Cache"] == "MISS", "a new message must drop the cached list"
    assert [c["id"] for c in r.json["chatrooms"]] == [first, second]
    assert r.json["chatrooms"][0]["message_count"] == 2 and r.json["chatrooms"][0]["last_message_at"]


def test_rename_and_delete_are_visible_at_once(alice):
    """A rename and a delete show in the very next list read, never a stale cached copy."""
    room = alice.room("old")
    alice.get("/chatroom")
    assert alice.get("/chatroom").headers["X-Cache"] == "HIT"
    assert alice.patch(f"/chatroom/{room}", json={"title": "new"}).json["name"] == "new"
    assert [c["name"] for c in alice.get("/chatroom").json["chatrooms"]] == ["new"]
    assert alice.delete(f"/chatroom/{room}").status_code == 204
    assert alice.get("/chatroom").json["chatrooms"] == []
    assert alice.get(f"/chatroom/{room}").status_code == 404


def test_cached_lists_never_cross_users(alice, bob):
    """Each user's cached list holds only their rooms."""
    a, b = alice.room("alice's"), bob.room("bob's")
    for _ in range(2):
        assert [c["id"] for c in alice.get("/chatroom").json["chatrooms"]] == [a]
        assert [c["id"] for c in bob.get("/chatroom").json["chatrooms"]] == [b]


def test_delete_removes_messages(app, alice):
    """Deleting a room deletes its messages too."""
    from gemini_backend.extensions import db
    from gemini_backend.models import Message
    room = alice.room()
    alice.say(room, "hi")
    alice.delete(f"/chatroom/{room}")
    with app.app_context():
        assert db.session.query(Message).filter_by(chatroom_id=room).count() == 0


def test_room_detail_and_pagination(alice):
    """GET room returns the newest `limit` messages oldest first with has_more; /messages pages by before/after."""
    room = alice.room()
    for i in range(3):
        alice.say(room, f"m{i}")  # 6 rows: 3 user + 3 pending replies
    detail = alice.get(f"/chatroom/{room}?limit=4").json
    ids = [m["id"] for m in detail["messages"]]
    assert len(ids) == 4 and ids == sorted(ids) and detail["has_more"] is True
    older = alice.get(f"/chatroom/{room}/messages?before={ids[0]}&limit=10").json
    assert len(older["messages"]) == 2 and older["has_more"] is False
    newer = alice.get(f"/chatroom/{room}/messages?after={older['messages'][0]['id']}&limit=2").json
    assert [m["id"] for m in newer["messages"]] == [older["messages"][1]["id"], ids[0]] and newer["has_more"] is True
    assert alice.get(f"/chatroom/{room}/messages?before=1&after=1").status_code == 422
    assert alice.get(f"/chatroom/{room}?limit=201").status_code == 422


def test_s1_other_users_rooms_are_404_everywhere(alice, bob):
    """S1: every chatroom route with another user's room id is 404, shows nothing and uses no quota."""
    room = alice.room("private")
    posted = alice.say(room, "secret")
    reply_id, message_id = posted["reply"]["id"], posted["message"]["id"]
    calls = [
        ("get", f"/chatroom/{room}", {}), ("patch", f"/chatroom/{room}", {"json": {"name": "x"}}),
        ("delete", f"/chatroom/{room}", {}), ("get", f"/chatroom/{room}/messages", {}),
        ("post", f"/chatroom/{room}/message", {"json": {"content": "hi"}}),
        ("get", f"/chatroom/{room}/message/{message_id}", {}),
        ("post", f"/chatroom/{room}/message/{reply_id}/retry", {}),
    ]
    for method, path, kw in calls:
        r = getattr(bob, method)(path, **kw)
        assert r.status_code == 404, (method, path, r.json)
        assert "secret" not in r.get_data(as_text=True) and "private" not in r.get_data(as_text=True)
    assert bob.usage_used() == 0
    assert alice.get(f"/chatroom/{room}").json["name"] == "private"


def test_unknown_ids_are_404(alice):
    """Ids that do not exist, including ones too large for the database, are 404."""
    for path in ("/chatroom/999999", "/chatroom/99999999999999999999999", "/chatroom/0"):
        assert alice.get(path).status_code == 404


@pytest.mark.skipif(BACKEND.name != "services", reason="needs the Redis cache of services mode")
def test_list_is_served_from_the_database_when_redis_is_down(alice):
    """With the cache's Redis unreachable, the list comes from the database (MISS), not a 500."""
    from gemini_backend import create_app
    room = alice.room("still here")
    broken = create_app({"APP_ENV": "test", "CACHE_REDIS_URL": "redis://127.0.0.1:1/0",
                         "CACHE_OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}})
    r = broken.test_client().get("/chatroom", headers=alice.headers)
    assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    assert [c["id"] for c in r.json["chatrooms"]] == [room]


def test_a_list_cached_by_an_older_shape_is_never_served(app, alice):
    """A list body left in the cache by a deploy whose Chatroom JSON had other fields (under that shape's key,
    with the current version) is not served: the key names the shape of the fields."""
    from gemini_backend.caching import chatroom_list_version_key
    from gemini_backend.services.chat import chatroom_list_key
    from gemini_backend.extensions import cache
    alice.room("real")
    alice.get("/chatroom")
    with app.app_context():
        version = cache.get(chatroom_list_version_key(alice.id))
        stale = (version, b'{"chatrooms": [{"id": 1, "name": "old shape"}]}')
        cache.set(f"chatrooms:user:{alice.id}:list", stale)  # the key of the builds before keys named a shape
        cache.set(f"chatrooms:user:{alice.id}:list:0ldshape", stale)  # another shape's key
        assert chatroom_list_key(alice.id).startswith(f"chatrooms:user:{alice.id}:list:")
    r = alice.get("/chatroom")
    assert r.headers["X-Cache"] == "HIT" and [c["name"] for c in r.json["chatrooms"]] == ["real"]
